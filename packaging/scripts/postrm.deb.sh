#!/bin/sh
# deb postrm. On purge: forget that the unit was enabled, and remove the
# secret and API token that baton init wrote (dpkg removes baton.yaml itself)
# and the directories if nothing else is in them. The quorum data in
# /var/lib/baton (the cluster's history) is kept if there is any: remove it
# yourself.
set -e
if [ "$1" = purge ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge baton.service >/dev/null || true
	fi
	rm -f /etc/baton/secret /etc/baton/api-token
	rmdir /etc/baton 2>/dev/null || true
	rmdir /var/lib/baton 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
