#!/usr/bin/env bash
# Checks the rpm that `make package` left in dist/ without installing it
# (this is a Debian machine): its files, which of them are
# %config(noreplace), their owners and modes, and its scriptlets. Installs
# Debian's rpm package for the rpm tool when it is missing and apt-get is
# there (as root); otherwise only says so.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
rpmfile=$(ls -t dist/prometheus-streams-*.rpm 2>/dev/null | head -1)
[ -n "$rpmfile" ] || fail "no dist/prometheus-streams-*.rpm: run make package first"

if ! command -v rpm >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing rpm (the tool) to inspect $rpmfile"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null
	else
		echo "test-rpm: no rpm tool; $rpmfile was built by nfpm but is not inspected"
		exit 0
	fi
fi

rpm -qip "$rpmfile" | sed -n '1,/^Description/p'
# rpm -U from 1.0 (0.0.1-1.el7 to 0.0.6-1.el7) must be an upgrade; an
# untagged build (2.0.0~dev.<sha>) sorts below the 2.0.0 release.
evr=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$rpmfile")
vercmp() { rpm --eval "%{lua: print(rpm.vercmp('$1', '$2'))}"; }
if [ "$(vercmp 1 0)" = 1 ]; then
	[ "$(vercmp "$evr" 0.0.6-1.el7)" = 1 ] || fail "$evr is not above 1.0's 0.0.6-1.el7: rpm -U would refuse it as older"
	case "$evr" in *~dev*) [ "$(vercmp "$evr" 2.0.0-1)" = -1 ] || fail "untagged $evr is not below 2.0.0-1" ;; esac
	echo "version: $evr > 0.0.6-1.el7"
else
	echo "version: $evr (this rpm cannot compare versions from the command line)"
fi
files=$(rpm -qlp "$rpmfile")
for f in /usr/bin/prometheus-streams \
	/etc/prometheus-streams/prometheus-streams.yaml \
	/etc/sysconfig/prometheus-streams-poller /etc/sysconfig/prometheus-streams-receiver \
	/usr/lib/systemd/system/prometheus-streams-poller.service \
	/usr/lib/systemd/system/prometheus-streams-receiver.service \
	/usr/share/man/man1/prometheus-streams-poller.1.gz \
	/usr/share/bash-completion/completions/prometheus-streams \
	/usr/share/zsh/vendor-completions/_prometheus-streams \
	/usr/share/fish/vendor_completions.d/prometheus-streams.fish \
	/etc/logrotate.d/prometheus-streams; do
	grep -qx "$f" <<<"$files" || fail "$rpmfile lacks $f"
done
! grep -q '^/etc/default/' <<<"$files" || fail "$rpmfile has Debian's /etc/default files"
echo "files: $(wc -l <<<"$files")"

# %config(noreplace) shows as flags containing c (config) and n (noreplace).
# (Printed from a variable: tee /dev/stderr would reopen, and so truncate, a
# log file that stderr is redirected to.)
etc_files=$(rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpmfile" | grep ' /etc/')
echo "$etc_files"
awk '$1 !~ /c/ || $1 !~ /n/ { bad = 1 } END { exit bad }' <<<"$etc_files" || fail "an /etc file is not %config(noreplace)"
rpm -qp --queryformat '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpmfile" \
	| grep -qx -- '-rw-r----- root:prometheus-streams /etc/prometheus-streams/prometheus-streams.yaml' \
	|| fail "prometheus-streams.yaml is not root:prometheus-streams 0640"
# 1.0 compatibility: its binary path, and its log file owned (never shipped)
# so that removing 1.0's package on the upgrade does not delete it.
rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmfile" \
	| grep -qx 'g /var/log/prometheus-streams.log' || fail "/var/log/prometheus-streams.log is not a %ghost"
rpm -qp --queryformat '[%{FILELINKTOS} %{FILENAMES}\n]' "$rpmfile" \
	| grep -qx '/usr/bin/prometheus-streams /usr/sbin/prometheus-streams' || fail "/usr/sbin/prometheus-streams is not a link to /usr/bin"
scripts=$(rpm -qp --scripts "$rpmfile")
for s in preinstall postinstall preuninstall postuninstall; do
	grep -q "^$s scriptlet" <<<"$scripts" || fail "$rpmfile has no $s scriptlet"
done
grep -q 'useradd --system' <<<"$scripts" || fail "the preinstall scriptlet does not create the user"
# useradd and groupadd for the preinstall scriptlet (a plain Requires: nfpm
# writes no Requires(pre)).
rpm -qp --requires "$rpmfile" | grep -qx '/usr/sbin/useradd' || fail "$rpmfile does not require /usr/sbin/useradd (shadow-utils, or shadow on SUSE)"
echo
echo "test-rpm: PASS"
