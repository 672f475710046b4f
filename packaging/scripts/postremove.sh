#!/bin/sh
# deb: postrm remove|purge|upgrade|...; rpm: %postun 0 (erase) or 1 (upgrade).
# The prometheus-streams user stays (files it wrote may remain); a purge
# removes the logs: the log directory, and 1.0's log file that postinstall.sh
# creates, with its rotated copies (logrotate's .1, .2.gz ...). The
# configuration is removed by dpkg on purge; rpm -e removes the log file, a
# %ghost of the package, and leaves the directory.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/log/prometheus-streams
	rm -f /var/log/prometheus-streams.log /var/log/prometheus-streams.log.[0-9]*
fi
exit 0
