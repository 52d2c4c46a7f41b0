#!/bin/sh
# rpm %postun: systemd forgets the removed unit. The config, the secrets and
# /var/lib/baton stay (rpm keeps an edited conffile as .rpmsave).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
