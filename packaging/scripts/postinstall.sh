#!/bin/sh
# After the files landed: the data dir's parent (root's only; made here, not
# shipped, because Debian ships directories 0755), and systemd learns of the
# unit. Nothing is enabled or
# started, on install or upgrade: an agent needs a configured cluster (baton
# init), and restarting running agents on every node at once would move every
# group. Restart upgraded nodes one at a time.
# deb: postinst configure; rpm: %post.
set -e
install -d -m 0700 /var/lib/baton
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-active --quiet baton 2>/dev/null; then
		echo "baton: the running agent still runs the old version; restart it when this node may hand off its groups (one node at a time): systemctl restart baton"
	fi
fi
exit 0
