#!/bin/sh
# deb prerm. On remove (not on upgrade): stop the agent, which hands its
# groups to a successor first.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	deb-systemd-invoke stop baton.service >/dev/null || true
fi
exit 0
