#!/usr/bin/env bash
# Installs the deb that `make package` left in dist/ on this machine and
# checks it as an operator would meet it: its version against 1.0's, the
# binary, the example configuration (readable by the service user, valid),
# the system user, the units (systemd-analyze verify and security), man pages
# and completions, 1.0's log file (there before a configuration names it, and
# written by the daemon through a sandbox like the units'), the logrotate file
# (logrotate run on a live daemon's log), 1.0 leftovers, an edited
# configuration surviving a reinstall and an upgrade, and a purge.
# Runs as root on Debian, with or without systemd as PID 1 (CI has none; the
# package's scripts only call systemctl when systemd runs). Whatever the
# script changes is undone on exit, failed or not: the package is purged
# unless KEEP=1. A prometheus-streams package already on the machine
# (installed, or removed with its configuration left) is only replaced with
# PURGE=1, so a developer's configuration is not lost.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=prometheus-streams
# By its path: another prometheus-streams (a go install, or root's PATH
# finding 1.0's /usr/sbin first) may come earlier on PATH.
bin=/usr/bin/prometheus-streams
conf=/etc/prometheus-streams/prometheus-streams.yaml
saved_conf=$conf.before-test-deb
units=(prometheus-streams-poller.service prometheus-streams-receiver.service)
legacy_log=/var/log/prometheus-streams.log
logs_dir=/var/log/prometheus-streams
logrotate_conf=/etc/logrotate.d/prometheus-streams
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# dpkg's two-letter state of the package ("ii" installed, "rc" removed with
# its conffiles left, "un"/"" unknown).
pkg_state() { dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | tr -d ' ' || true; }
perms() { stat -c '%U:%G %a' "$@"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs a package)"
deb=$(ls -t dist/${pkg}_*.deb 2>/dev/null | head -1 || true) # pipefail: ls fails when there is none
[ -n "$deb" ] || fail "no dist/${pkg}_*.deb: run make package first"

# One trap undoes everything, whichever step fails: the configuration a step
# replaced, a daemon a step started, the group the test made, and (unless
# KEEP=1) the package with its logs.
work=$(mktemp -d)
installed= made_nobody= daemon_pid=
cleanup() {
	local rc=$?
	set +e
	[ -z "$daemon_pid" ] || { kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; }
	[ ! -f "$saved_conf" ] || mv -f "$saved_conf" "$conf"
	if [ -n "$installed" ] && [ "${KEEP:-}" != 1 ]; then
		case "$(pkg_state)" in "" | un | pn) ;; *) dpkg --purge "$pkg" >/dev/null ;; esac
		rm -rf "$logs_dir"
		rm -f "$legacy_log" "$legacy_log".[0-9]*
	fi
	[ -z "$made_nobody" ] || groupdel nobody
	rm -rf "$work"
	[ "$rc" = 0 ] || echo "test-deb: FAIL (undone$([ "${KEEP:-}" != 1 ] || echo "; KEEP=1: $pkg left installed"))" >&2
	exit "$rc"
}
trap cleanup EXIT

state=$(pkg_state)
case "$state" in
"" | un | pn) ;;
*)
	[ "${PURGE:-}" = 1 ] || fail "$pkg is on this machine already (dpkg state $state: installed, or removed with its configuration left): PURGE=1 $0 purges it (its configuration and logs) first"
	dpkg --purge "$pkg" >/dev/null
	# Builds before 2.0's first release left these after a purge.
	rm -rf "$logs_dir"
	rm -f "$legacy_log" "$legacy_log".[0-9]*
	;;
esac
for f in "$legacy_log" "$logs_dir" "$logrotate_conf"; do
	[ ! -e "$f" ] || fail "$f exists, and not from $pkg: move it away first"
done

# The checks' tools; .ci/run installs them (with a policy-rc.d that keeps
# the packages' services from starting).
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v logrotate >/dev/null || need+=(logrotate)
[ ${#need[@]} = 0 ] || fail "missing ${need[*]}: apt-get install ${need[*]} (as .ci/run does)"

step "version: installs over 1.0 (0.0.1 to 0.0.6) as an upgrade"
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
dpkg --compare-versions "$upstream" gt 0.0.6 || fail "version $upstream is not above 1.0's last, 0.0.6: installing it over 1.0 is a downgrade"
case "$upstream" in
*~dev*) dpkg --compare-versions "$upstream" lt 2.0.0 || fail "untagged build $upstream is not below 2.0.0" ;;
esac
echo "$version > 0.0.6"
# The Makefile's mapping from git describe, when make is here.
if command -v make >/dev/null; then
	while read -r from want; do
		got=$(env -u PKG_VERSION make -s --no-print-directory pkg-version VERSION="$from")
		[ "$got" = "$want" ] || fail "PKG_VERSION for VERSION=$from is $got, want $want"
		dpkg --compare-versions "$got" gt 0.0.6 || fail "PKG_VERSION $got is not above 0.0.6"
		case "$got" in *~dev*) dpkg --compare-versions "$got" lt 2.0.0 || fail "PKG_VERSION $got is not below 2.0.0" ;; esac
		echo "VERSION=$from -> $got"
	done <<-'EOF'
		abc1234 2.0.0~dev.abc1234
		0123abc 2.0.0~dev.0123abc
		abc1234-dirty 2.0.0~dev.abc1234.dirty
		dev 2.0.0~dev
		v2.1.0 2.1.0
		2.1.0 2.1.0
		v2.1.0-3-gabc1234 2.1.0.3.gabc1234
		v2.1.0-rc.1 2.1.0~rc.1
		v2.1.0-rc.1-2-gabc1234 2.1.0~rc.1.2.gabc1234
	EOF
	# A pre-release sorts below its release.
	dpkg --compare-versions "$(env -u PKG_VERSION make -s --no-print-directory pkg-version VERSION=v2.1.0-rc.1)" lt 2.1.0 || fail "v2.1.0-rc.1 does not sort below 2.1.0"
fi

step "install $deb"
installed=1
dpkg -i "$deb" </dev/null
dpkg-query -W -f='${Package} ${Version} ${Status}\n' "$pkg"
# preinstall.sh's groupadd and useradd.
dpkg-deb -f "$deb" Pre-Depends | grep -qw passwd || fail "no Pre-Depends: passwd"

step "binary"
"$bin" version
[ "$(readlink -f /usr/sbin/prometheus-streams)" = "$bin" ] || fail "/usr/sbin/prometheus-streams (1.0's path) is not a link to $bin"

step "system user"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd prometheus-streams) || fail "no user prometheus-streams"
echo "prometheus-streams uid=$uid gid=$gid home=$home shell=$shell"
[ "$uid" -lt 1000 ] || fail "uid $uid is not a system uid"
case "$shell" in */nologin | /bin/false) ;; *) fail "login shell $shell" ;; esac
getent group prometheus-streams >/dev/null || fail "no group prometheus-streams"

step "configuration"
perm=$(perms "$conf")
echo "$conf $perm"
[ "$perm" = "root:prometheus-streams 640" ] || fail "$conf is $perm, want root:prometheus-streams 640"
dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q " $conf " || fail "$conf is not a conffile"
# As the units run it: the service user must be able to read the file.
runuser -u prometheus-streams -- "$bin" check-config --config "$conf"
for role in poller receiver; do
	runuser -u prometheus-streams -- "$bin" check-config --config "$conf" --role "$role" >/dev/null
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

step "1.0's log file: made by the install, before a configuration names it"
unit=/usr/lib/systemd/system/prometheus-streams-poller.service
grep -qx 'ProtectSystem=strict' "$unit" && grep -qx "ReadWritePaths=-$legacy_log" "$unit" || fail "$unit: not ProtectSystem=strict with ReadWritePaths=-$legacy_log, which this step imitates"
! grep -qs "^[[:space:]]*logfile:.*$legacy_log" /etc/prometheus-streams/*.yaml || fail "a configuration names $legacy_log already: the step would prove nothing"
perm=$(stat -c '%U:%G %a %s' "$legacy_log" 2>/dev/null) || fail "the install did not create $legacy_log"
[ "$perm" = "prometheus-streams:prometheus-streams 640 0" ] || fail "$legacy_log is $perm, want prometheus-streams:prometheus-streams 640, empty"
echo "$legacy_log $perm"
# "${as_unit[@]}" runs a command as the service user the way the units do
# for the log files: /var/log read-only (ProtectSystem=strict) but for 1.0's
# file when it exists (ReadWritePaths=-). unshare, sh and setpriv exec, so
# $! of a command started in the background is the command's PID. Without
# mount namespaces here, only the user is the unit's.
as_user=(setpriv --reuid=prometheus-streams --regid=prometheus-streams --init-groups --)
sandbox= as_unit=("${as_user[@]}")
if unshare -m -- sh -c 'mount --bind /var/log /var/log && mount -o remount,bind,ro /var/log' 2>/dev/null; then
	sandbox=1
	# shellcheck disable=SC2016 # expanded by sh -c
	as_unit=(unshare -m -- sh -c 'log=$1; shift
		mount --bind /var/log /var/log && { [ ! -e "$log" ] || mount --bind "$log" "$log"; } &&
		mount -o remount,bind,ro /var/log && exec "$@"' sh "$legacy_log" "${as_user[@]}")
fi
# What 1.0's Puppet module writes after installing the package (to_yaml of
# its parameters: logfile: $log_file, by default 1.0's file), for a poller
# whose NATS does not answer: the daemon starts, logs and retries.
cp -p "$conf" "$saved_conf"
cat >"$conf" <<EOF
---
verbose: false
debug: false
logfile: "$legacy_log"
scrape_interval: "30s"
max_age: 65
monitor_port: 0
poller_stream:
  cluster_id: dc1_stream
  urls: nats://127.0.0.1:1
  topic: prometheus
receiver_stream: {}
push_gateway: {}
jobs:
  node:
    targets:
    - name: web1.dc1.example.net
      url: http://127.0.0.1:9/metrics
EOF
rc=0
"${as_unit[@]}" timeout -s TERM 2 "$bin" --config "$conf" poller 2>"$work/stderr" || rc=$?
[ "$rc" = 124 ] || fail "the poller did not run with a 1.0 configuration naming $legacy_log (exit $rc): $(cat "$work/stderr")"
grep -q 'msg=starting role=poller' "$legacy_log" && grep -q 'msg=stopped role=poller' "$legacy_log" || fail "the poller did not log into $legacy_log"
echo "the poller, as the service user$([ -z "$sandbox" ] || echo " with /var/log read-only but for $legacy_log"), logged into it"
if [ -n "$sandbox" ]; then
	# Without the file the sandboxed daemon cannot create it: why the
	# install makes it. Any install (here a reinstall) makes it again.
	rm "$legacy_log"
	# timeout: should it open the log after all, it would run on (retrying NATS).
	if "${as_unit[@]}" timeout -s TERM 5 "$bin" --config "$conf" poller 2>"$work/stderr"; then fail "the poller ran without $legacy_log"; fi
	grep -q 'open logfile:.*read-only file system' "$work/stderr" || fail "unexpected: $(cat "$work/stderr")"
	echo "without it: $(cat "$work/stderr")"
	dpkg -i "$deb" </dev/null >/dev/null
	[ "$(stat -c '%U:%G %a %s' "$legacy_log")" = "prometheus-streams:prometheus-streams 640 0" ] || fail "the reinstall did not make $legacy_log again"
	echo "a reinstall made it again"
fi

step "logrotate: $logrotate_conf, on a running daemon's log (copytruncate)"
dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q " $logrotate_conf " || fail "$logrotate_conf is not a conffile"
[ "$(perms "$logrotate_conf")" = "root:root 644" ] || fail "$logrotate_conf is $(perms "$logrotate_conf")"
if command -v logrotate >/dev/null; then
	logrotate --debug --state "$work/logrotate.state" "$logrotate_conf" >"$work/logrotate.out" 2>&1 || fail "logrotate --debug: $(cat "$work/logrotate.out")"
	! grep -i 'error' "$work/logrotate.out" || fail "logrotate --debug reports errors"
	grep -q "considering log $legacy_log" "$work/logrotate.out" && grep -q "considering log $logs_dir/\*.log" "$work/logrotate.out" ||
		fail "logrotate does not consider $legacy_log and $logs_dir/*.log: $(cat "$work/logrotate.out")"
	echo "logrotate --debug: clean"
	# The units' logs directory, as LogsDirectory= makes it, with a log in it.
	install -d -m 0750 -o prometheus-streams -g prometheus-streams "$logs_dir"
	"${as_user[@]}" sh -c "echo 'a line' >$logs_dir/poller.log"
	"${as_unit[@]}" "$bin" --config "$conf" poller 2>"$work/stderr" &
	daemon_pid=$!
	for _ in $(seq 50); do grep -q 'msg=starting' "$legacy_log" && break; sleep 0.1; done
	grep -q 'msg=starting' "$legacy_log" || fail "the poller did not start: $(cat "$work/stderr")"
	logrotate --force --state "$work/logrotate.state" "$logrotate_conf" || fail "logrotate failed"
	kill -TERM "$daemon_pid"
	wait "$daemon_pid" || fail "the poller did not stop cleanly: $(cat "$work/stderr")"
	daemon_pid=
	grep -q 'msg=starting' "$legacy_log.1" || fail "$legacy_log.1 is not the rotated log"
	[ "$(perms "$legacy_log.1")" = "prometheus-streams:prometheus-streams 640" ] || fail "$legacy_log.1 is $(perms "$legacy_log.1")"
	# The daemon kept writing into the truncated file, from its start
	# (O_APPEND): no NUL bytes where the old content was.
	grep -q 'msg=stopped' "$legacy_log" || fail "the daemon's lines after the rotation are not in $legacy_log"
	! grep -q 'msg=starting' "$legacy_log" || fail "$legacy_log was not truncated"
	tr -d '\000' <"$legacy_log" | cmp -s - "$legacy_log" || fail "$legacy_log has NUL bytes: the daemon wrote at its old offset"
	[ "$(perms "$legacy_log")" = "prometheus-streams:prometheus-streams 640" ] || fail "$legacy_log is $(perms "$legacy_log") after the rotation"
	[ "$(stat -c %U "$logs_dir/poller.log.1" 2>/dev/null)" = prometheus-streams ] || fail "$logs_dir/poller.log was not rotated as prometheus-streams"
	echo "rotated $legacy_log under the running poller, which wrote on into it; rotated $logs_dir/poller.log as prometheus-streams"
	rm -rf "$logs_dir"
	rm -f "$legacy_log".[0-9]*
	: >"$legacy_log"
else
	echo "logrotate: not installed here; $logrotate_conf is a conffile"
fi
mv -f "$saved_conf" "$conf"

step "1.0 leftovers: the binary in /usr/sbin, a configuration of group nobody"
[ "$(readlink -f /usr/sbin/prometheus-streams)" = "$bin" ] || fail "no /usr/sbin/prometheus-streams link (1.0's path)"
if ! getent group nobody >/dev/null; then groupadd --system nobody && made_nobody=1; fi
cp -p "$conf" "$saved_conf"
# As 1.0's package left it: root:nobody 0640.
chgrp nobody "$conf"
dpkg -i "$deb" </dev/null >/dev/null
perm=$(perms "$conf")
[ "$perm" = "root:prometheus-streams 640" ] || fail "after the upgrade from 1.0 $conf is $perm, want root:prometheus-streams 640"
runuser -u prometheus-streams -- "$bin" check-config --config "$conf" --role poller >/dev/null
echo "configuration regrouped to prometheus-streams"
mv -f "$saved_conf" "$conf"
if [ -n "$made_nobody" ]; then groupdel nobody && made_nobody=; fi

step "reinstall keeps an edited configuration"
sed -i 's/^scrape_interval: 60s$/scrape_interval: 30s # edited by test-deb.sh/' "$conf"
echo 'ARGS=--log-format json # edited by test-deb.sh' >>/etc/default/prometheus-streams-poller
dpkg -i "$deb" </dev/null >/dev/null
grep -q 'edited by test-deb.sh' "$conf" || fail "reinstall replaced $conf"
grep -q 'edited by test-deb.sh' /etc/default/prometheus-streams-poller || fail "reinstall replaced /etc/default/prometheus-streams-poller"
"$bin" check-config --config "$conf" --role poller | grep 'scrape_interval 30s'

step "upgrade to a version whose example configuration changed keeps the edited one"
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
[ "$(perms "$conf")" = "root:prometheus-streams 640" ] || fail "upgrade changed $conf's owner or mode"
echo "kept $conf, new example in $conf.dpkg-dist"
rm -f "$conf.dpkg-dist"

if [ "${KEEP:-}" = 1 ]; then
	step "kept installed (KEEP=1)"
	exit 0
fi
step "purge"
dpkg --purge "$pkg" >/dev/null
for f in "$bin" "$conf" /usr/lib/systemd/system/"${units[0]}" "$logrotate_conf" "$legacy_log" "$logs_dir"; do
	[ ! -e "$f" ] || fail "purge left $f"
done
getent passwd prometheus-streams >/dev/null || fail "purge removed the user (files it owns may remain)"
echo "purged, with $legacy_log; user prometheus-streams kept"
echo
echo "test-deb: PASS"
