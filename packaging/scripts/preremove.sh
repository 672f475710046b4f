#!/bin/sh
# deb: prerm remove|upgrade|...; rpm: %preun 0 (erase) or 1 (upgrade).
# Only a removal stops and disables the units; an upgrade restarts them in
# postinstall.sh.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now prometheus-streams-poller.service prometheus-streams-receiver.service >/dev/null 2>&1 || true
fi
exit 0
