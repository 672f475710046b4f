#!/bin/sh
# deb: postinst configure [old-version]; rpm: %post 1 (install) or 2 (upgrade).
# The units are not enabled or started on a first install: the example
# configuration points at example.net, and a host usually runs one role only.
# On an upgrade, units that are running are restarted onto the new binary.
set -e

upgrade=
case "$1" in
configure) [ -n "$2" ] && upgrade=1 ;;
[0-9]*) [ "$1" -ge 2 ] && upgrade=1 ;;
*) exit 0 ;;
esac

# 1.0 compatibility. 1.0's daemons ran as nobody, and its package left the
# configuration readable by group nobody: the daemons now run as
# prometheus-streams. 1.0 files (its Puppet module always) name
# logfile: /var/log/prometheus-streams.log, the one file outside
# /var/log/prometheus-streams/ the units may write (ReadWritePaths); it must
# exist and belong to the service user before a unit starts.
conf=/etc/prometheus-streams/prometheus-streams.yaml
if [ -f "$conf" ] && [ "$(stat -c %G "$conf")" = nobody ]; then
	chgrp prometheus-streams "$conf"
	chmod g+r "$conf"
fi
legacy_log=/var/log/prometheus-streams.log
if [ -e "$legacy_log" ] || grep -qs "^[[:space:]]*logfile:[[:space:]]*[\"']\{0,1\}$legacy_log" /etc/prometheus-streams/*.yaml; then
	touch "$legacy_log"
	chown prometheus-streams:prometheus-streams "$legacy_log"
	chmod 0640 "$legacy_log"
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ -n "$upgrade" ]; then
		systemctl try-restart prometheus-streams-poller.service prometheus-streams-receiver.service >/dev/null 2>&1 || true
	fi
fi
if [ -z "$upgrade" ]; then
	echo "prometheus-streams: edit /etc/prometheus-streams/prometheus-streams.yaml, check it with"
	echo "  prometheus-streams check-config --config /etc/prometheus-streams/prometheus-streams.yaml"
	echo "then: systemctl enable --now prometheus-streams-poller (or prometheus-streams-receiver)"
fi
exit 0
