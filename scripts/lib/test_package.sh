#!/usr/bin/env bash
# The .deb as an operator gets it: build it with cargo-deb, install it with dpkg into a
# throwaway copy-on-write root of this machine (overlayfs over /, in private mount and PID
# namespaces, so nothing reaches the host and every process dies with the test), then:
#   - the package's fields, files and conffiles;
#   - systemd-analyze verify of the unit (and its offline security exposure, printed);
#   - vipd --check of the shipped /etc/vipd/vipd.toml; vipctl answers --help; the shipped
#     Prometheus rules pass promtool, the Grafana dashboard is JSON;
#   - vipd logging to a real systemd-journald in that root: journalctl finds PRIORITY, TARGET
#     and SYSLOG_IDENTIFIER fields, and not when stderr is some other stream;
#   - the unit started for real by systemd as PID 1 in a systemd-nspawn container over that
#     root, in a box of the scale-out bed (scripts/lib/e2e_unit.py: forwarding under the
#     sandbox, systemctl reload, state across kill -ABRT, a stalled worker and the watchdog);
#   - systemctl enable (offline), dpkg -r (conffiles stay), dpkg -P (everything goes);
#   - nothing left behind: the overlay's upper layer holds only dpkg's records and logs.
# Prints "package: N passed, M failed". Usage: scripts/lib/test_package.sh [DEB]
# (default: build one from the debug binaries, `cargo deb --profile dev`: the release build
# takes minutes and the packaging does not depend on optimisation).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "package: needs root (dpkg, mount namespaces)" >&2; exit 2; }

deb=${1:-}
if [ -z "$deb" ]; then
  cargo deb --version >/dev/null 2>&1 || { echo "package: cargo-deb is missing (scripts/setup installs it)" >&2; exit 2; }
  out=target/debian/test
  rm -rf "$out"
  mkdir -p "$out"
  # cargo-deb warns that the dev profile is for tests only: that is what this is.
  if ! cargo deb -p vipd-control --profile dev --fast -o "$out/" >"$out/cargo-deb.log" 2>&1; then
    echo "package: cargo deb failed:" >&2; tail -20 "$out/cargo-deb.log" >&2; exit 1
  fi
  grep -v "^ *\(To enable debug\|warning: dev profile\)" "$out/cargo-deb.log" || true
  rm -f "$out/cargo-deb.log"
  deb=$(ls "$out"/vipd_*.deb)
fi
[ -f "$deb" ] || { echo "package: no .deb at $deb" >&2; exit 2; }
deb=$(realpath "$deb")

root=$(mktemp -d /tmp/vipd-pkgtest.XXXXXX)
trap 'rmdir "$root" 2>/dev/null || true' EXIT

# Everything below runs in new mount and PID namespaces: the mounts vanish and every process
# started there (journald, vipd) is killed when it ends, whatever happens.
unshare --mount --pid --fork --mount-proc --propagation private bash -s "$root" "$deb" <<'INNER'
set -uo pipefail
root=$1 deb=$2
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

mount -t tmpfs tmpfs "$root"
mkdir -p "$root"/upper "$root"/work "$root"/merged
mount -t overlay overlay -o "lowerdir=/,upperdir=$root/upper,workdir=$root/work" "$root/merged"
m=$root/merged
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
mount --rbind /sys "$m/sys"
mount -t tmpfs tmpfs "$m/run"     # no running systemd in there: maintainer scripts skip it
mount -t tmpfs tmpfs "$m/tmp"
in_root() { chroot "$m" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# 1. The package itself.
fields=$(dpkg-deb -f "$deb")
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
check "Depends on the DPDK libraries, librte-pdump included" grep -q "^Depends:.*librte-eal.*librte-pdump" <<<"$fields"
for f in ./usr/sbin/vipd ./usr/bin/vipctl ./usr/lib/systemd/system/vipd.service ./etc/vipd/vipd.toml \
         ./etc/default/vipd ./usr/lib/vipd/vipd-hugepages ./usr/share/doc/vipd/operations.md \
         ./usr/share/doc/vipd/copyright ./usr/share/vipd/prometheus/vipd.rules.yml \
         ./usr/share/vipd/grafana/vipd-dashboard.json ./usr/share/doc/vipd/examples/bird-vipd.conf; do
  check "ships $f" grep -qx "$f" <<<"$contents"
done
check "conffiles: /etc/vipd/vipd.toml and /etc/default/vipd" \
  bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | sort | tr "\n" " " | grep -qx "/etc/default/vipd /etc/vipd/vipd.toml "' _ "$deb"

# 2. Install.
cp "$deb" "$m/tmp/vipd.deb"
if in_root dpkg -i /tmp/vipd.deb >"$root/dpkg-i.log" 2>&1; then ok "dpkg -i into a fresh root"; else fail "dpkg -i: $(tail -5 "$root/dpkg-i.log")"; fi
check "dpkg says installed" bash -c 'chroot "$1" dpkg-query -W -f "\${Status}" vipd | grep -q "install ok installed"' _ "$m"

# 3. The unit.
verify=$(in_root systemd-analyze verify /usr/lib/systemd/system/vipd.service 2>&1)
if [ $? -eq 0 ] && ! grep -q "vipd" <<<"$verify"; then ok "systemd-analyze verify vipd.service: clean"; else fail "systemd-analyze verify: $verify"; fi
exposure=$(in_root systemd-analyze security --offline=true /usr/lib/systemd/system/vipd.service 2>/dev/null | tail -1)
score=$(grep -oE 'level for vipd.service: [0-9.]+' <<<"$exposure" | awk '{print $NF}')
check "systemd-analyze security vipd.service below 3.0 (${score:-no score})" \
  awk -v s="${score:-99}" 'BEGIN { exit !(s < 3.0) }'
check "the vipd user exists (systemd-sysusers from the package)" bash -c 'chroot "$1" getent passwd vipd >/dev/null' _ "$m"
check "/etc/vipd is group vipd, 0750" bash -c '[ "$(chroot "$1" stat -c %G:%a /etc/vipd)" = vipd:750 ]' _ "$m"

# 4. The binaries and the shipped example.
if out=$(in_root vipd --check /etc/vipd/vipd.toml 2>&1); then ok "vipd --check /etc/vipd/vipd.toml: $(head -1 <<<"$out")"; else fail "vipd --check of the shipped example: $out"; fi
check "vipctl --help" bash -c 'chroot "$1" vipctl --help >/dev/null' _ "$m"
if command -v promtool >/dev/null; then
  check "promtool check rules of the shipped rules file" bash -c 'chroot "$1" promtool check rules /usr/share/vipd/prometheus/vipd.rules.yml >/dev/null' _ "$m"
fi
check "the shipped Grafana dashboard is JSON" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$m/usr/share/vipd/grafana/vipd-dashboard.json"
check "vipd-hugepages refuses a bad VIPD_HUGEPAGES" bash -c '! VIPD_HUGEPAGES=lots chroot "$1" /usr/lib/vipd/vipd-hugepages 2>/dev/null' _ "$m"

# 5. Structured logs in a real journal. vipd fails at once here (its EAL finds no such
# device), after logging at info, warning and error.
mkdir -p "$m/run/systemd/journal"
in_root /lib/systemd/systemd-journald >"$root/journald.log" 2>&1 &
for _ in $(seq 50); do [ -S "$m/run/systemd/journal/stdout" ] && break; sleep 0.1; done
cat >"$m/tmp/journal.toml" <<'TOML'
[eal]
file_prefix = "vipd-pkgtest"
hugepages = false
memory_mb = 64
[dataplane]
worker_cores = [0]
control_core = 0
[state]
file = "/tmp/vipd-pkgtest-state.json"
[[ports]]
name = "lan"
device = "net_vipdpkgtest0"
ipv4 = "10.99.0.10/24"
[[services]]
vip = "10.99.100.1"
proto = "tcp"
port = 80
health_check = { type = "tcp" }
[[services.real_servers]]
ip = "10.99.0.21"
TOML
# systemd-cat connects stderr to journald's stream socket, as systemd does for a service;
# JOURNAL_STREAM says which stream that is (or, the control, names another one).
run_logged() { # TAG JOURNAL_STREAM-mode
  in_root systemd-cat -t "$1" sh -c '
    if [ "$1" = match ]; then export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); else export JOURNAL_STREAM=1:1; fi
    exec vipd --config /tmp/journal.toml' _ "$2"
}
run_logged vipd-journal match
run_logged vipd-stderr other
sleep 0.5
journal=$(in_root journalctl --no-pager -o json SYSLOG_IDENTIFIER=vipd 2>/dev/null)
fields_of() { python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print(e.get("PRIORITY"), e.get("TARGET"), e.get("MESSAGE", "")[:100], sep=" | ")' ; }
echo "     journal (PRIORITY | TARGET | MESSAGE):"
fields_of <<<"$journal" | sed 's/^/       /'
# The daemon's start-up steps log from its modules (vipd_control::daemon::start, ...).
check "journal: info line with TARGET vipd_control::daemon::*" grep -q '"TARGET":"vipd_control::daemon' <<<"$journal"
check "journal: the health-check warning at PRIORITY 4" bash -c 'grep "\"PRIORITY\":\"4\"" <<<"$1" | grep -q kernel_interface' _ "$journal"
check "journal: the fatal error at PRIORITY 3" bash -c 'grep "\"PRIORITY\":\"3\"" <<<"$1" | grep -q net_vipdpkgtest0' _ "$journal"
stderr_lines=$(in_root journalctl --no-pager -o json SYSLOG_IDENTIFIER=vipd-stderr 2>/dev/null)
check "stderr that is not the journal stream: formatted lines, no TARGET field" \
  bash -c 'grep -q "EAL arguments" <<<"$1" && ! grep -q "\"TARGET\"" <<<"$1"' _ "$stderr_lines"

# 5b. The unit for real: systemd as PID 1 (systemd-nspawn) on an overlay of this root with
# the package installed, in a box of the scale-out bed: vipd forwards under the sandbox,
# reloads, keeps its state across a crash, and a stalled worker withdraws the VIP and trips
# the watchdog (scripts/lib/e2e_unit.py).
if command -v systemd-nspawn >/dev/null && command -v bird >/dev/null; then
  python3 scripts/lib/e2e_unit.py "$root/upper" </dev/null 2>&1 | tee "$root/unit.log" | grep -v "^unit: [0-9]* passed"
  unit_line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$root/unit.log" || echo "unit: 0 passed, 1 failed")
  unit_ok=$(awk '{print $2}' <<<"$unit_line") unit_failed=$(awk '{print $4}' <<<"$unit_line")
  passed=$((passed + unit_ok)) failed=$((failed + unit_failed))
else
  fail "the unit under systemd: systemd-nspawn (systemd-container) or bird (bird2) missing: scripts/setup installs them"
fi

# 6. Enable, remove, purge.
in_root systemctl enable vipd.service >/dev/null 2>&1
check "systemctl enable (offline) links the unit" test -L "$m/etc/systemd/system/multi-user.target.wants/vipd.service"
in_root dpkg -r vipd >"$root/dpkg-r.log" 2>&1 || fail "dpkg -r: $(tail -3 "$root/dpkg-r.log")"
check "dpkg -r removes the binaries and unit" bash -c '[ ! -e "$1/usr/sbin/vipd" ] && [ ! -e "$1/usr/lib/systemd/system/vipd.service" ]' _ "$m"
check "dpkg -r keeps the conffiles" test -f "$m/etc/vipd/vipd.toml"
in_root dpkg -P vipd >"$root/dpkg-p.log" 2>&1 || fail "dpkg -P: $(tail -3 "$root/dpkg-p.log")"
check "dpkg -P removes the conffiles and the enable link" bash -c '[ ! -e "$1/etc/vipd" ] && [ ! -e "$1/etc/default/vipd" ] && [ ! -L "$1/etc/systemd/system/multi-user.target.wants/vipd.service" ]' _ "$m"

# 7. Nothing left behind: every file or new directory in the upper layer is dpkg's own record,
# a log, or this test's own input (/tmp and /run are tmpfs mounted over the overlay); the
# vipd system user stays in the account files (Debian policy: a purge does not remove
# system users, whose uid may still own files).
left=$(cd "$root/upper" && find . -mindepth 1 \( ! -type d -o -type d -empty \) -print | while read -r p; do
  case $p in
    ./var/lib/dpkg/*|./var/log/*|./etc/.pwd.lock|./etc/passwd|./etc/passwd-|./etc/group|./etc/group-|./etc/shadow|./etc/shadow-|./etc/gshadow|./etc/gshadow-) ;;
    *) if [ -d "$p" ] && [ -d "/$p" ]; then :; else echo "$p"; fi ;;
  esac
done)
if [ -z "$left" ]; then ok "nothing left behind after purge"; else fail "left behind after purge: $(head -20 <<<"$left" | tr '\n' ' ')"; fi

echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
INNER
