#!/bin/sh
# deb: postrm remove|purge|upgrade|...; rpm: %postun 0 (erase) or 1 (upgrade).
# The prometheus-streams user stays (files it wrote may remain); a purge
# removes the log directory. The configuration is removed by dpkg on purge.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/log/prometheus-streams
fi
exit 0
