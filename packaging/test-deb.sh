#!/usr/bin/env bash
# Installs the deb that `make package` left in dist/ on this machine and
# checks it as an operator would meet it: the binary, the example
# configuration (readable by the service user, valid), the system user, the
# units (systemd-analyze verify and security), man pages and completions, an
# edited configuration surviving a reinstall and an upgrade, and a purge.
# Runs as root on Debian, with or without systemd as PID 1 (CI has none; the
# package's scripts only call systemctl when systemd runs). The package is
# purged at the end unless KEEP=1. An installed prometheus-streams package is
# only replaced with PURGE=1, so a developer's configuration is not lost.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=prometheus-streams
conf=/etc/prometheus-streams/prometheus-streams.yaml
units=(prometheus-streams-poller.service prometheus-streams-receiver.service)
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs a package)"
deb=$(ls -t dist/${pkg}_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no dist/${pkg}_*.deb: run make package first"

if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
	[ "${PURGE:-}" = 1 ] || fail "$pkg is installed already: PURGE=1 $0 purges it (and its configuration) first"
	dpkg --purge "$pkg" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v systemd-analyze >/dev/null; then
	step "installing systemd for systemd-analyze"
	apt-get update -qq
	made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
	fi
	apt-get install -y -qq --no-install-recommends systemd >/dev/null
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

step "install $deb"
dpkg -i "$deb" </dev/null
dpkg-query -W -f='${Package} ${Version} ${Status}\n' "$pkg"

step "binary"
/usr/bin/prometheus-streams version
# root's PATH may find 1.0's /usr/sbin path first: a link to the same binary.
[ "$(readlink -f "$(command -v prometheus-streams)")" = /usr/bin/prometheus-streams ] || fail "prometheus-streams on PATH is $(command -v prometheus-streams)"

step "system user"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd prometheus-streams) || fail "no user prometheus-streams"
echo "prometheus-streams uid=$uid gid=$gid home=$home shell=$shell"
[ "$uid" -lt 1000 ] || fail "uid $uid is not a system uid"
case "$shell" in */nologin | /bin/false) ;; *) fail "login shell $shell" ;; esac
getent group prometheus-streams >/dev/null || fail "no group prometheus-streams"

step "configuration"
perm=$(stat -c '%U:%G %a' "$conf")
echo "$conf $perm"
[ "$perm" = "root:prometheus-streams 640" ] || fail "$conf is $perm, want root:prometheus-streams 640"
dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q " $conf " || fail "$conf is not a conffile"
# As the units run it: the service user must be able to read the file.
runuser -u prometheus-streams -- /usr/bin/prometheus-streams check-config --config "$conf"
for role in poller receiver; do
	runuser -u prometheus-streams -- /usr/bin/prometheus-streams check-config --config "$conf" --role "$role" >/dev/null
	[ -f /etc/default/prometheus-streams-$role ] || fail "no /etc/default/prometheus-streams-$role"
done

step "units"
for u in "${units[@]}"; do
	[ -f /usr/lib/systemd/system/"$u" ] || fail "no /usr/lib/systemd/system/$u"
	[ ! -e /etc/systemd/system/multi-user.target.wants/"$u" ] || fail "$u was enabled on install"
done
# verify also runs man(1) for each Documentation=man: page, when man exists.
man_opt=--man=yes
command -v man >/dev/null || man_opt=--man=no
out=$(cd /usr/lib/systemd/system && systemd-analyze verify "$man_opt" "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
# Anything printed is a warning about our units; other units' noise (on a
# machine whose own units have problems) names them, ours do not appear.
if grep -F prometheus-streams <<<"$out"; then fail "systemd-analyze verify warns about our units"; fi
echo "systemd-analyze verify $man_opt: clean"
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
	for u in "${units[@]}"; do
		score=$(systemd-analyze security --offline=true --no-pager /usr/lib/systemd/system/"$u" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
		echo "systemd-analyze security $u: exposure $score"
		awk -v s="$score" 'BEGIN { exit !(s != "" && s + 0 <= 2.0) }' || fail "$u exposure $score, want <= 2.0"
	done
fi

step "man pages and completions"
# Slim Debian images tell dpkg not to install man pages (path-exclude);
# there the package's contents are checked instead.
if grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
	dpkg-deb -c "$deb" | grep -q '/usr/share/man/man1/prometheus-streams-poller.1.gz' || fail "no man pages in $deb"
	echo "man pages: excluded by dpkg's configuration here; present in $deb"
else
	for p in prometheus-streams prometheus-streams-poller prometheus-streams-receiver prometheus-streams-check-config; do
		zcat "/usr/share/man/man1/$p.1.gz" | grep -q '^\.TH "PROMETHEUS-STREAMS" "1"' || fail "man page $p"
	done
	ls /usr/share/man/man1/prometheus-streams*.1.gz | wc -l | xargs echo "man pages:"
fi
bash -c 'source /usr/share/bash-completion/completions/prometheus-streams && complete -p prometheus-streams'
grep -q '#compdef prometheus-streams' /usr/share/zsh/vendor-completions/_prometheus-streams || fail "zsh completion"
grep -q 'complete -c prometheus-streams' /usr/share/fish/vendor_completions.d/prometheus-streams.fish || fail "fish completion"

step "1.0 leftovers: the binary in /usr/sbin, a configuration of group nobody, logfile"
[ "$(readlink -f /usr/sbin/prometheus-streams)" = /usr/bin/prometheus-streams ] || fail "no /usr/sbin/prometheus-streams link (1.0's path)"
made_nobody=
if ! getent group nobody >/dev/null; then groupadd --system nobody && made_nobody=1; fi
legacy_log=/var/log/prometheus-streams.log
[ ! -e "$legacy_log" ] || fail "$legacy_log exists before the test"
cp -p "$conf" "$conf.before-1.0-test"
# As 1.0's package and Puppet module left a host: root:nobody 0640, logfile set.
chgrp nobody "$conf"
echo "logfile: $legacy_log # 1.0's Puppet module" >>"$conf"
dpkg -i "$deb" </dev/null >/dev/null
perm=$(stat -c '%U:%G %a' "$conf")
[ "$perm" = "root:prometheus-streams 640" ] || fail "after the upgrade from 1.0 $conf is $perm, want root:prometheus-streams 640"
perm=$(stat -c '%U:%G %a' "$legacy_log" 2>/dev/null) || fail "postinstall did not create $legacy_log"
[ "$perm" = "prometheus-streams:prometheus-streams 640" ] || fail "$legacy_log is $perm"
runuser -u prometheus-streams -- /usr/bin/prometheus-streams check-config --config "$conf" --role poller >/dev/null
grep -q 'ReadWritePaths=-/var/log/prometheus-streams.log' /usr/lib/systemd/system/prometheus-streams-poller.service || fail "units cannot write $legacy_log"
echo "configuration regrouped to prometheus-streams, $legacy_log writable by the units"
mv "$conf.before-1.0-test" "$conf"
rm -f "$legacy_log"
[ -z "$made_nobody" ] || groupdel nobody

step "reinstall keeps an edited configuration"
sed -i 's/^scrape_interval: 60s$/scrape_interval: 30s # edited by test-deb.sh/' "$conf"
echo 'ARGS=--log-format json # edited by test-deb.sh' >>/etc/default/prometheus-streams-poller
dpkg -i "$deb" </dev/null >/dev/null
grep -q 'edited by test-deb.sh' "$conf" || fail "reinstall replaced $conf"
grep -q 'edited by test-deb.sh' /etc/default/prometheus-streams-poller || fail "reinstall replaced /etc/default/prometheus-streams-poller"
prometheus-streams check-config --config "$conf" --role poller | grep 'scrape_interval 30s'

step "upgrade to a version whose example configuration changed keeps the edited one"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$deb" "$work/pkg"
old_version=$(dpkg-deb -f "$deb" Version)
sed -i "s/^Version: .*/Version: ${old_version}+test1/" "$work/pkg/DEBIAN/control"
echo '# changed in the next version' >>"$work/pkg$conf"
(cd "$work/pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb -b "$work/pkg" "$work/next.deb" >/dev/null
# Unattended upgrades answer dpkg's conffile question this way (apt-get -o
# Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold).
dpkg -i --force-confdef --force-confold "$work/next.deb" </dev/null >/dev/null
dpkg-query -W -f='${Package} ${Version}\n' "$pkg"
grep -q 'edited by test-deb.sh' "$conf" || fail "upgrade replaced $conf"
[ -f "$conf.dpkg-dist" ] || fail "upgrade did not leave the new example as $conf.dpkg-dist"
grep -q 'changed in the next version' "$conf.dpkg-dist" || fail "$conf.dpkg-dist is not the new example"
[ "$(stat -c '%U:%G %a' "$conf")" = "root:prometheus-streams 640" ] || fail "upgrade changed $conf's owner or mode"
echo "kept $conf, new example in $conf.dpkg-dist"
rm -f "$conf.dpkg-dist"

if [ "${KEEP:-}" = 1 ]; then
	step "kept installed (KEEP=1)"
	exit 0
fi
step "purge"
dpkg --purge "$pkg" >/dev/null
[ ! -e /usr/bin/prometheus-streams ] || fail "purge left /usr/bin/prometheus-streams"
[ ! -e "$conf" ] || fail "purge left $conf"
[ ! -e /usr/lib/systemd/system/"${units[0]}" ] || fail "purge left ${units[0]}"
getent passwd prometheus-streams >/dev/null || fail "purge removed the user (files it owns may remain)"
echo "purged; user prometheus-streams kept"
echo
echo "test-deb: PASS"
