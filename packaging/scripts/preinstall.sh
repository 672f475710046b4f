#!/bin/sh
# Runs before the files are unpacked (deb: preinst install|upgrade; rpm: %pre),
# so the group exists when /etc/prometheus-streams/prometheus-streams.yaml is
# unpacked as root:prometheus-streams 0640.
set -e

user=prometheus-streams
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false

if ! getent group "$user" >/dev/null; then
	groupadd --system "$user"
fi
if ! getent passwd "$user" >/dev/null; then
	useradd --system --gid "$user" --no-create-home --home-dir /nonexistent \
		--shell "$nologin" --comment "prometheus-streams daemons" "$user"
fi
exit 0
