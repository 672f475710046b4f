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
# prometheus-streams.
conf=/etc/prometheus-streams/prometheus-streams.yaml
if [ -f "$conf" ] && [ "$(stat -c %G "$conf")" = nobody ]; then
	chgrp prometheus-streams "$conf"
	chmod g+r "$conf"
fi
# 1.0's log file, which 1.0's package shipped and its Puppet module names
# (logfile: $log_file, default /var/log/prometheus-streams.log). It is the one
# file outside /var/log/prometheus-streams/ the units may write, and only if
# it exists when a unit starts (ReadWritePaths=-, under ProtectSystem=strict:
# the daemon cannot create it). The Puppet module installs the package first
# and writes the configuration afterwards, so the file is made on every
# install, whatever the configuration says now: empty, for the service user.
# A symbolic link there is the administrator's and left alone. A purge
# removes the file (postremove.sh).
legacy_log=/var/log/prometheus-streams.log
if [ ! -L "$legacy_log" ]; then
	[ -e "$legacy_log" ] || : >"$legacy_log"
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
