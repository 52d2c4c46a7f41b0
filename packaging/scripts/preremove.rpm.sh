#!/bin/sh
# rpm %preun. On erase ($1 = 0, not on upgrade: 1): stop the agent, which
# hands its groups to a successor first, and disable it.
set -e
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
	systemctl stop baton >/dev/null 2>&1 || true
	systemctl disable baton >/dev/null 2>&1 || true
fi
exit 0
