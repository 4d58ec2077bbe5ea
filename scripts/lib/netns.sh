# shellcheck shell=bash
# vipd namespace test bed: a bash library, to be sourced (safe under `set -euo pipefail`).
#
#   client ns  PREFIX-client   PREFIX-c0  192.168.77.2/24 (+ .3 .. .10), fd77::2/64 (+ ::3 .. ::10)
#       |                                 default via 192.168.77.1 / fd77::1
#   router ns  PREFIX-router   PREFIX-rc0 192.168.77.1/24, fd77::1/64; ip_forward=1 (v4 and v6)
#       |                      PREFIX-br0 bridge 10.77.0.1/24, fd00:77::1/64 (the server segment)
#       |                      routes: VIP 10.77.100.1/32 via 10.77.0.10, fd00:77:100::1/128 via fd00:77::10
#       +-- bridge port PREFIX-blb0 -- PREFIX-lb0 in PREFIX-lb (no IP, no ARP, IPv6 off: DPDK owns it
#       |                                    through net_af_packet; 10.77.0.10 / fd00:77::10 are vipd's)
#       +-- bridge port PREFIX-brsI -- PREFIX-rsI in PREFIX-rsI: 10.77.0.(20+I)/24, fd00:77::(20+I)/64
#                                      default via the LB (nat) or via the router (dr, tun)
#
# Every object is named PREFIX-...; teardown deletes by exact name only, so beds with different
# prefixes can run side by side and a leftover bed never disturbs another one. Nothing is created
# in the caller's namespace. MACs are fixed (02:77:...) so captures and static neighbours are
# predictable: router bridge 02:77:00:00:00:01, LB 02:77:00:00:00:0a, RS I 02:77:00:00:00:<20+I hex>.
#
# Functions (PREFIX: 1-8 letters/digits, starting with a letter; default vt):
#   vipd_testbed_up PREFIX N_RS [MODE]     build (MODE nat|dr|tun, default nat); all or nothing
#   vipd_testbed_down PREFIX               kill processes in the namespaces, delete them (idempotent)
#   vipd_testbed_info PREFIX               print addresses as shell assignments (eval-able)
#   vipd_testbed_exists PREFIX             true when any namespace of the bed exists
#   vipd_in NS CMD...                      run CMD in namespace NS (ip netns exec)
#   vipd_rs_start PREFIX I PORT [UDP_PORT] start rs_server.py in PREFIX-rsI, wait until it listens
#                                          (GET /health answers the status in the state dir's
#                                          rsI.health file when it exists, else 200; GET /slow
#                                          waits the milliseconds in rsI.delay)
#   vipd_rs_stop PREFIX I / vipd_rs_stop_all PREFIX
#   vipd_rs_gateway PREFIX I lb|router     point RS I's default routes (v4 + v6) at the LB or router
#   vipd_rs_dr_setup PREFIX I VIP4 [VIP6]  DR/TUN real server: VIP on lo, arp_ignore=1,
#                                          arp_announce=2, default route via the router
#   vipd_rs_tun_setup PREFIX I VIP4 [VIP6] TUN real server without an ipip device: the DR setup
#                                          plus tc ingress BPF decapsulation (ipip_decap.bpf.c,
#                                          built into the state dir), rp_filter=1, advmss 1440/1400
#                                          on the default routes (VIPs: comma lists allowed)
#   vipd_rs_tun_detach PREFIX I            remove that BPF program again
#   vipd_spawn PREFIX NAME NS CMD...       start CMD in the background in NS, pid/log in the state dir
#   vipd_kill PREFIX NAME                  stop a process started by vipd_spawn (TERM, then KILL)
#   vipd_arp_probe NS DEV IP [TIMEOUT_S]   send one ARP request, print the MACs that answer
#
# State (pid files, logs): ${VIPD_TESTBED_STATE:-/tmp/vipd-testbed}/PREFIX/.

VIPD_TESTBED_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VIPD_TESTBED_LIB=$VIPD_TESTBED_LIB_DIR/netns.sh
: "${VIPD_TESTBED_STATE:=/tmp/vipd-testbed}"
if [ -z "${VIPD_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then VIPD_PYTHON=/usr/bin/python3; else VIPD_PYTHON=python3; fi
fi

# Address plan (fixed; vipd_testbed_info prints it per prefix).
VIPD_VIP4=10.77.100.1
VIPD_VIP6=fd00:77:100::1
VIPD_LB4=10.77.0.10
VIPD_LB6=fd00:77::10
VIPD_LB_MAC=02:77:00:00:00:0a
VIPD_ROUTER4=10.77.0.1
VIPD_ROUTER6=fd00:77::1
VIPD_ROUTER_MAC=02:77:00:00:00:01
VIPD_ROUTER_CLIENT4=192.168.77.1
VIPD_ROUTER_CLIENT6=fd77::1
VIPD_CLIENT4=192.168.77.2
VIPD_CLIENT6=fd77::2
VIPD_CLIENT_MAC=02:77:01:00:00:02
VIPD_CLIENT_EXTRA_LAST=10 # extra client addresses .3 .. .10 (and fd77::3 .. ::a)

_vipd_err() { echo "vipd-testbed: $*" >&2; }

_vipd_check_prefix() {
  if ! [[ ${1:-} =~ ^[A-Za-z][A-Za-z0-9]{0,7}$ ]]; then
    _vipd_err "bad prefix '${1:-}': 1-8 letters/digits, starting with a letter"
    return 1
  fi
}

_vipd_check_index() { # I N_MAX
  if ! [[ ${1:-} =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$2" ]; then
    _vipd_err "bad real server index '${1:-}' (1..$2)"
    return 1
  fi
}

_vipd_state() { echo "$VIPD_TESTBED_STATE/$1"; }

# The bed PREFIX is up and has a real server I.
_vipd_check_bed_rs() { # PREFIX I
  [ -d "$(_vipd_state "$1")" ] || {
    _vipd_err "test bed '$1' is not up (vipd_testbed_up $1 N_RS [MODE])"
    return 1
  }
  local n
  n=$(_vipd_n_rs "$1")
  _vipd_check_index "$2" "${n:-0}"
}

_vipd_rs_mac() { printf '02:77:00:00:00:%02x' $((20 + $1)); }

# Namespaces of the bed that exist now, by exact name.
_vipd_namespaces() {
  local p=$1
  ip netns list 2>/dev/null | awk '{print $1}' |
    grep -E "^${p}-(client|router|lb|rs[0-9]+|box[0-9]+)\$" || true # boxN: scaleout.sh's
}

vipd_testbed_exists() {
  _vipd_check_prefix "${1:-}" || return 1
  [ -n "$(_vipd_namespaces "$1")" ]
}

vipd_in() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# Our own pid and our ancestors': never kill those (the caller may run inside a namespace).
_vipd_protected_pids() {
  local pid=$$
  echo "$BASHPID"
  while [ -n "$pid" ] && [ "$pid" -gt 1 ] 2>/dev/null; do
    echo "$pid"
    pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)
  done
}

# TERM the given pids, wait up to ~3 s, then KILL the survivors.
_vipd_kill_pids() {
  local pids=("$@") p i alive
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for i in $(seq 1 30); do
    alive=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${alive[@]}" 2>/dev/null || true
  sleep 0.1
}

vipd_testbed_down() {
  local p=${1:-vt} ns pid protected pids=()
  _vipd_check_prefix "$p" || return 1
  local nss
  nss=$(_vipd_namespaces "$p")
  protected=" $(_vipd_protected_pids | tr '\n' ' ') "
  for ns in $nss; do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
      case "$protected" in *" $pid "*) continue ;; esac
      pids+=("$pid")
    done
  done
  _vipd_kill_pids "${pids[@]}"
  for ns in $nss; do
    ip netns del "$ns" 2>/dev/null || _vipd_err "could not delete namespace $ns"
  done
  rm -rf "$(_vipd_state "$p")"
  # Report what is left (a namespace still held by a process we must not kill).
  nss=$(_vipd_namespaces "$p")
  if [ -n "$nss" ]; then
    _vipd_err "left behind: $(echo "$nss" | tr '\n' ' ')"
    return 1
  fi
  return 0
}

vipd_testbed_up() {
  local p=${1:-vt} n=${2:-} mode=${3:-nat} state
  _vipd_check_prefix "$p" || return 1
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 99 ]; then
    _vipd_err "vipd_testbed_up PREFIX N_RS [nat|dr|tun]: N_RS must be 1..99 (got '${n}')"
    return 1
  fi
  case "$mode" in nat | dr | tun) ;; *)
    _vipd_err "unknown mode '$mode' (nat, dr, tun)"
    return 1
    ;;
  esac
  local tool
  for tool in ip ethtool; do
    command -v "$tool" >/dev/null 2>&1 || {
      _vipd_err "$tool not found (scripts/setup installs it)"
      return 1
    }
  done
  state=$(_vipd_state "$p")
  if vipd_testbed_exists "$p" || [ -e "$state" ]; then
    _vipd_err "test bed '$p' already exists (leftover or in use); remove it with vipd_testbed_down $p"
    return 1
  fi
  mkdir -p "$VIPD_TESTBED_STATE"
  mkdir "$state" || {
    _vipd_err "cannot claim $state"
    return 1
  }
  echo "$n" >"$state/n_rs"
  echo "$mode" >"$state/mode"
  # Build in a child bash so `set -e` holds whatever context the caller is in; undo on failure.
  if ! bash -c 'set -Eeuo pipefail
      trap '\''echo "vipd-testbed: vipd_testbed_up failed: line $LINENO: $BASH_COMMAND" >&2'\'' ERR
      source "$1"; shift; _vipd_build "$@"' _ "$VIPD_TESTBED_LIB" "$p" "$n" "$mode"; then
    vipd_testbed_down "$p" || true
    return 1
  fi
}

_vipd_sysctl() { # NS key=value...
  local ns=$1
  shift
  ip netns exec "$ns" sysctl -qw "$@" >/dev/null
}

_vipd_offloads_off() { # NS DEV
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 ||
    ip netns exec "$1" ethtool -K "$2" tx off gso off gro off >/dev/null
}

_vipd_new_ns() { # NS: namespace with lo up, no DAD, no RA autoconf, for devices created later
  ip netns add "$1"
  ip -n "$1" link set lo up
  _vipd_sysctl "$1" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
}

# Runs in a child `bash -e` (see vipd_testbed_up).
_vipd_build() {
  local p=$1 n=$2 mode=$3 i a
  local c=$p-client r=$p-router lb=$p-lb br=$p-br0

  _vipd_new_ns "$c"
  _vipd_new_ns "$r"
  _vipd_new_ns "$lb"

  # Router: forwarding, a plain L2 bridge for the server segment.
  _vipd_sysctl "$r" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
  if ip netns exec "$r" test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    # br_netfilter is loaded on this host: keep the bridge a pure switch.
    _vipd_sysctl "$r" net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
      net.bridge.bridge-nf-call-arptables=0
  fi
  ip -n "$r" link add "$br" address "$VIPD_ROUTER_MAC" type bridge stp_state 0 forward_delay 0 \
    mcast_snooping 0
  _vipd_offloads_off "$r" "$br" || true
  ip -n "$r" addr add "$VIPD_ROUTER4/24" dev "$br"
  ip -n "$r" addr add "$VIPD_ROUTER6/64" dev "$br" nodad
  ip -n "$r" link set "$br" up

  # Client <-> router.
  ip -n "$c" link add "$p-c0" address "$VIPD_CLIENT_MAC" type veth peer name "$p-rc0" netns "$r"
  _vipd_offloads_off "$c" "$p-c0"
  _vipd_offloads_off "$r" "$p-rc0"
  ip -n "$c" link set "$p-c0" up
  ip -n "$r" link set "$p-rc0" up
  ip -n "$r" addr add "$VIPD_ROUTER_CLIENT4/24" dev "$p-rc0"
  ip -n "$r" addr add "$VIPD_ROUTER_CLIENT6/64" dev "$p-rc0" nodad
  ip -n "$c" addr add "$VIPD_CLIENT4/24" dev "$p-c0"
  ip -n "$c" addr add "$VIPD_CLIENT6/64" dev "$p-c0" nodad
  for a in $(seq 3 "$VIPD_CLIENT_EXTRA_LAST"); do
    # IPv4 extras are secondaries; IPv6 extras deprecated (preferred_lft 0): usable when bound,
    # never picked as the default source, so unbound clients always come from .2 / ::2.
    ip -n "$c" addr add "192.168.77.$a/24" dev "$p-c0"
    ip -n "$c" addr add "fd77::$(printf '%x' "$a")/64" dev "$p-c0" nodad preferred_lft 0
  done
  ip -n "$c" route add default via "$VIPD_ROUTER_CLIENT4"
  ip -n "$c" -6 route add default via "$VIPD_ROUTER_CLIENT6"
  _vipd_sysctl "$c" net.ipv4.tcp_tw_reuse=1

  # LB: the DPDK-owned veth end, no address, silent kernel (no ARP, no IPv6: nothing the
  # kernel sends there could reach DPDK's af_packet socket or the segment).
  ip -n "$lb" link add "$p-lb0" address "$VIPD_LB_MAC" type veth peer name "$p-blb0" netns "$r"
  _vipd_sysctl "$lb" "net.ipv6.conf.$p-lb0.disable_ipv6=1"
  ip -n "$lb" link set "$p-lb0" arp off
  _vipd_offloads_off "$lb" "$p-lb0"
  _vipd_offloads_off "$r" "$p-blb0"
  ip -n "$r" link set "$p-blb0" master "$br"
  ip -n "$r" link set "$p-blb0" up
  ip -n "$lb" link set "$p-lb0" up

  # VIP routes on the router: to the LB's address (vipd answers ARP/ND for it).
  ip -n "$r" route add "$VIPD_VIP4/32" via "$VIPD_LB4" dev "$br"
  ip -n "$r" -6 route add "$VIPD_VIP6/128" via "$VIPD_LB6" dev "$br"

  # Real servers.
  for i in $(seq 1 "$n"); do
    local rs=$p-rs$i
    _vipd_new_ns "$rs"
    ip -n "$rs" link add "$p-rs$i" address "$(_vipd_rs_mac "$i")" type veth \
      peer name "$p-brs$i" netns "$r"
    _vipd_offloads_off "$rs" "$p-rs$i"
    _vipd_offloads_off "$r" "$p-brs$i"
    ip -n "$r" link set "$p-brs$i" master "$br"
    ip -n "$r" link set "$p-brs$i" up
    ip -n "$rs" link set "$p-rs$i" up
    ip -n "$rs" addr add "10.77.0.$((20 + i))/24" dev "$p-rs$i"
    ip -n "$rs" addr add "fd00:77::$((20 + i))/64" dev "$p-rs$i" nodad
    if [ "$mode" = nat ]; then
      vipd_rs_gateway "$p" "$i" lb
    else
      vipd_rs_dr_setup "$p" "$i" "$VIPD_VIP4" "$VIPD_VIP6"
    fi
  done
}

vipd_rs_gateway() { # PREFIX I lb|router
  local p=$1 i=$2 via=${3:-} gw4 gw6 ns=$1-rs$2
  case "$via" in
  lb) gw4=$VIPD_LB4 gw6=$VIPD_LB6 ;;
  router) gw4=$VIPD_ROUTER4 gw6=$VIPD_ROUTER6 ;;
  *)
    _vipd_err "vipd_rs_gateway PREFIX I lb|router"
    return 1
    ;;
  esac
  ip -n "$ns" route replace default via "$gw4" dev "$p-rs$i" &&
    ip -n "$ns" -6 route replace default via "$gw6" dev "$p-rs$i"
}

vipd_rs_dr_setup() { # PREFIX I VIP4 [VIP6]
  local p=$1 i=$2 vip4=${3:-} vip6=${4:-} ns=$1-rs$2 dev=$1-rs$2
  if [ -z "$vip4" ]; then
    _vipd_err "vipd_rs_dr_setup PREFIX I VIP4 [VIP6]"
    return 1
  fi
  _vipd_sysctl "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    "net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2" || return 1
  ip -n "$ns" addr replace "$vip4/32" dev lo || return 1
  if [ -n "$vip6" ]; then
    ip -n "$ns" addr replace "$vip6/128" dev lo nodad || return 1
  fi
  vipd_rs_gateway "$p" "$i" router
}

_vipd_n_rs() {
  local state
  state=$(_vipd_state "$1")
  if [ -r "$state/n_rs" ]; then
    cat "$state/n_rs"
  else
    _vipd_namespaces "$1" | grep -c -- "-rs[0-9]*\$" || true
  fi
}

vipd_testbed_info() {
  local p=${1:-vt} n i a mode list4="" list6=""
  _vipd_check_prefix "$p" || return 1
  n=$(_vipd_n_rs "$p")
  mode=$(cat "$(_vipd_state "$p")/mode" 2>/dev/null || echo nat)
  for a in $(seq 2 "$VIPD_CLIENT_EXTRA_LAST"); do
    list4+="${list4:+,}192.168.77.$a"
    list6+="${list6:+,}fd77::$(printf '%x' "$a")"
  done
  cat <<EOF
PREFIX=$p
MODE=$mode
NS_CLIENT=$p-client
NS_ROUTER=$p-router
NS_LB=$p-lb
LB_IF=$p-lb0
LB_MAC=$VIPD_LB_MAC
BRIDGE=$p-br0
VIP4=$VIPD_VIP4
VIP6=$VIPD_VIP6
LB4=$VIPD_LB4
LB6=$VIPD_LB6
ROUTER4=$VIPD_ROUTER4
ROUTER6=$VIPD_ROUTER6
ROUTER_MAC=$VIPD_ROUTER_MAC
ROUTER_CLIENT4=$VIPD_ROUTER_CLIENT4
ROUTER_CLIENT6=$VIPD_ROUTER_CLIENT6
CLIENT4=$VIPD_CLIENT4
CLIENT6=$VIPD_CLIENT6
CLIENT4_ALL=$list4
CLIENT6_ALL=$list6
SEGMENT4=10.77.0.0/24
SEGMENT6=fd00:77::/64
N_RS=$n
EOF
  for i in $(seq 1 "$n"); do
    echo "NS_RS_$i=$p-rs$i"
    echo "RS_IF_$i=$p-rs$i"
    echo "RS4_$i=10.77.0.$((20 + i))"
    echo "RS6_$i=fd00:77::$((20 + i))"
    echo "RS_MAC_$i=$(_vipd_rs_mac "$i")"
  done
}

# ARP probe (who answers for IP on DEV?): prints the MAC of each answer, false when none came.
# e.g. vipd_arp_probe vt-router vt-br0 10.77.0.10  (is vipd answering for its address?)
vipd_arp_probe() { # NS DEV IP [TIMEOUT_S]
  ip netns exec "$1" "$VIPD_PYTHON" - "$2" "$3" "${4:-1}" <<'PYEOF'
import socket, struct, sys, time
dev, ip, tmo = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((dev, 0))
mac = s.getsockname()[4][:6]
src = socket.inet_aton("0.0.0.0")
try:  # the device's IPv4 address as the sender (SIOCGIFADDR); 0.0.0.0 (a probe) without one
    import fcntl
    src = fcntl.ioctl(socket.socket(), 0x8915, struct.pack("256s", dev.encode()))[20:24]
except OSError:
    pass
tip = socket.inet_aton(ip)
req = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + src + b"\0" * 6 + tip
s.send(req)
s.settimeout(0.1)
seen, end = [], time.monotonic() + tmo
while time.monotonic() < end:
    try:
        f = s.recv(128)
    except socket.timeout:
        continue
    if len(f) >= 42 and f[20:22] == b"\0\x02" and f[28:32] == tip:
        m = ":".join("%02x" % b for b in f[22:28])
        if m not in seen:
            seen.append(m)
            print(m)
sys.exit(0 if seen else 1)
PYEOF
}

# Background process in a namespace; pid and log in the state dir.
vipd_spawn() { # PREFIX NAME NS CMD...
  local p=$1 name=$2 ns=$3 state pid
  shift 3
  state=$(_vipd_state "$p")
  [ -d "$state" ] || {
    _vipd_err "test bed '$p' is not up"
    return 1
  }
  # `ip netns exec` execs CMD, so $! is CMD's pid. A non-interactive caller's background jobs
  # ignore SIGINT: a Ctrl-C reaches the caller, whose trap tears down (TERM by pid).
  ip netns exec "$ns" "$@" >"$state/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/$name.pid"
}

vipd_kill() { # PREFIX NAME
  local f pid
  f=$(_vipd_state "$1")/$2.pid
  [ -r "$f" ] || return 0
  pid=$(cat "$f")
  rm -f "$f"
  [ -n "$pid" ] && _vipd_kill_pids "$pid"
  wait "$pid" 2>/dev/null || true
  return 0
}

vipd_rs_start() { # PREFIX I PORT [UDP_PORT]
  local p=${1:-} i=${2:-} port=${3:-} udp=${4:-} state t pid args
  _vipd_check_prefix "$p" || return 1
  _vipd_check_bed_rs "$p" "$i" || return 1
  state=$(_vipd_state "$p")
  [[ $port =~ ^[0-9]+$ ]] || {
    _vipd_err "vipd_rs_start PREFIX I PORT [UDP_PORT]: bad port '$port'"
    return 1
  }
  vipd_kill "$p" "rs$i"
  args=(--name "rs$i" --port "$port" --health-file "$state/rs$i.health" --delay-file "$state/rs$i.delay")
  [ -n "$udp" ] && args+=(--udp "$udp")
  vipd_spawn "$p" "rs$i" "$p-rs$i" "$VIPD_PYTHON" -u "$VIPD_TESTBED_LIB_DIR/rs_server.py" "${args[@]}" ||
    return 1
  pid=$(cat "$state/rs$i.pid")
  for t in $(seq 1 100); do
    if grep -q '^listening' "$state/rs$i.log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      _vipd_err "rs_server rs$i exited: $(tail -n 5 "$state/rs$i.log" 2>/dev/null)"
      return 1
    fi
    sleep 0.05
  done
  _vipd_err "rs_server rs$i not listening after 5 s: $(tail -n 5 "$state/rs$i.log" 2>/dev/null)"
  return 1
}

vipd_rs_stop() { vipd_kill "$1" "rs$2"; }

vipd_rs_stop_all() {
  local p=${1:-vt} f
  _vipd_check_prefix "$p" || return 1
  for f in "$(_vipd_state "$p")"/rs*.pid; do
    [ -e "$f" ] || continue
    f=${f##*/}
    vipd_kill "$p" "${f%.pid}"
  done
}

# ---------------------------------------------------------------------------------------------
# TUN (IP-in-IP) real server without an ipip device.
#
#   vipd_rs_tun_setup PREFIX I VIP4[,VIP4...] [VIP6[,VIP6...]]
#
# In TUN mode vipd wraps each client packet in an outer IP header addressed to the real server
# (4in4 / 6in6, or 4in6 / 6in4 when the server is reached over the other family); the server
# unwraps it, answers from the VIP, and the reply goes straight to the client via the router.
# A kernel without ipip/sit/ip6tnl (like this one) can unwrap with a tc ingress BPF program
# (scripts/lib/ipip_decap.bpf.c): it strips the outer header only when the outer destination
# is one of this server's addresses and the inner destination is a VIP; all else passes.
#
# What this function runs, the way an operator would on a real server (here DEV = PREFIX-rsI,
# RS4/RS6 = 10.77.0.(20+I) / fd00:77::(20+I), GW4/GW6 = the router 10.77.0.1 / fd00:77::1):
#
#   # 1. build the decapsulation program for this server's addresses and VIPs
#   #    (V4 = the four bytes, V6 = the eight 16-bit groups; several: V4(..) V4(..))
#   clang -O2 -g -target bpf -I/usr/include/$(gcc -print-multiarch) -c ipip_decap.bpf.c \
#     -o ipip_decap.o \
#     -D'IPIP_LOCAL4=V4(10,77,0,21)' -D'IPIP_LOCAL6=V6(0xfd00,0x77,0,0,0,0,0,0x21)' \
#     -D'IPIP_VIP4=V4(10,77,100,1)' -D'IPIP_VIP6=V6(0xfd00,0x77,0x100,0,0,0,0,0x1)'
#   # 2. attach it to the ingress of the interface facing the load balancer
#   tc qdisc replace dev DEV clsact
#   tc filter replace dev DEV ingress pref 49 handle 1 bpf direct-action obj ipip_decap.o sec tc
#   # 3. the VIPs are local addresses (on lo), never announced on the segment
#   ip addr replace VIP4/32 dev lo
#   ip addr replace VIP6/128 dev lo nodad
#   sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
#             net.ipv4.conf.DEV.arp_ignore=1 net.ipv4.conf.DEV.arp_announce=2
#   # 4. reverse-path filter: strict is fine (see below)
#   sysctl -w net.ipv4.conf.DEV.rp_filter=1
#   # 5. replies go straight to the clients through the router, and the MSS this server
#   #    announces leaves room for the outer header (see below)
#   ip route replace default via GW4 dev DEV advmss 1440
#   ip -6 route replace default via GW6 dev DEV advmss 1400
#
# rp_filter: 1 (strict) works and is what this function sets on DEV. The program runs before
# routing, so the kernel sees the inner packet (client -> VIP) arriving on DEV, and the route
# back to the client also leaves through DEV. (With an ipip device the inner packet arrives on
# tunl0 instead, hence the usual advice of rp_filter 0 or 2 there; a BPF decap needs neither.)
# Use 2 (loose) only when the route back to some clients leaves through another interface.
# IPv6 has no rp_filter.
#
# MTU / MSS: the LB adds 20 (IPv4 outer) or 40 (IPv6 outer) bytes to every client -> server
# packet, so with a 1500-byte segment a full-size client segment (inner 1500) no longer fits.
# The usual fix is to make clients send smaller segments: the server announces a smaller MSS
# (the "advmss" route metric is the MSS option of its SYN-ACKs on connections whose route back
# is that route). MSS = 1500 - outer - inner IP header - 20 (TCP):
#   4in4 1500-20-20-20 = 1440    6in6 1500-40-40-20 = 1400
#   4in6 1500-40-20-20 = 1420    6in4 1500-20-40-20 = 1420
# Defaults: 1440 on the IPv4 route, 1400 on the IPv6 one (the LB reaches the server over the
# VIP's family). When it reaches it over the other family, use 1420 on the route of the inner
# family (4in6: VIPD_TUN_ADVMSS4=1420, 6in4: VIPD_TUN_ADVMSS6=1420; empty: no advmss).
# VIPD_TUN_CFLAGS adds clang flags (e.g. -DIPIP_NO_DECAP_FLAGS: the pre-6.3 fallback).
# Only the encapsulated direction is affected: replies (server -> client) are not encapsulated
# and keep full 1460-byte segments. advmss does not help non-TCP traffic: inner packets above
# 1480 bytes (1460 under an IPv6 outer header) do not fit a 1500-byte segment at all, and
# fragmented outer packets are not decapsulated (the kernel reassembles them after tc, then
# finds no ipip handler), so the LB must not fragment the outer packet.
# Alternatives: raise the MTU of the LB <-> server segment to 1520/1540, or rewrite the MSS of
# the server's SYN-ACKs with nftables (output hook:
# tcp flags & (syn | ack) == syn | ack tcp option maxseg size set 1440).
# ---------------------------------------------------------------------------------------------

VIPD_TUN_BPF_SRC=$VIPD_TESTBED_LIB_DIR/ipip_decap.bpf.c

# ADDR -> the V4(...) / V6(...) macro ipip_decap.bpf.c matches on.
_vipd_tun_addr_macro() {
  "$VIPD_PYTHON" -c '
import ipaddress, sys
a = ipaddress.ip_address(sys.argv[1])
if a.version == 4:
    print("V4(%s)" % ",".join(str(b) for b in a.packed))
else:
    print("V6(%s)" % ",".join("0x%x" % int(g, 16) for g in a.exploded.split(":")))
' "$1"
}

# clang flags (-D lists) for LOCAL4 LOCAL6 VIP4S VIP6S (comma lists, may be empty).
_vipd_tun_defines() {
  local local4=$1 local6=$2 vip4s=$3 vip6s=$4 name list a m out
  for name in LOCAL4 LOCAL6 VIP4 VIP6; do
    case $name in LOCAL4) list=$local4 ;; LOCAL6) list=$local6 ;; VIP4) list=$vip4s ;; VIP6) list=$vip6s ;; esac
    out=""
    for a in ${list//,/ }; do
      m=$(_vipd_tun_addr_macro "$a") || {
        _vipd_err "bad address '$a'"
        return 1
      }
      case "$name:$m" in LOCAL4:V4* | VIP4:V4* | LOCAL6:V6* | VIP6:V6*) ;; *)
        _vipd_err "'$a' is not an IPv${name: -1} address"
        return 1
        ;;
      esac
      out+="${out:+ }$m"
    done
    [ -n "$out" ] && echo "-DIPIP_$name=$out"
  done
  return 0
}

# Compile ipip_decap.bpf.c into OBJ with the given -D flags, unless OBJ is newer than the source
# and was built with the same flags (recorded in OBJ.flags).
_vipd_tun_build() { # OBJ DEFINE...
  local obj=$1 inc="" ma
  shift
  command -v clang >/dev/null 2>&1 || {
    _vipd_err "clang not found (scripts/setup installs clang, llvm, libbpf-dev)"
    return 1
  }
  if [ -f "$obj" ] && [ "$obj" -nt "$VIPD_TUN_BPF_SRC" ] && [ -f "$obj.flags" ] &&
    [ "$(cat "$obj.flags")" = "$(printf '%s\n' "$@")" ]; then
    return 0
  fi
  # <linux/bpf.h> needs <asm/types.h>, which Debian keeps under the multiarch directory that
  # clang -target bpf does not search by default.
  ma=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
    echo "$(uname -m)-linux-gnu")
  [ -d "/usr/include/$ma" ] && inc="-I/usr/include/$ma"
  # shellcheck disable=SC2086 # $inc: zero or one word
  clang -O2 -g -Wall -target bpf $inc "$@" -c "$VIPD_TUN_BPF_SRC" -o "$obj.tmp" || {
    rm -f "$obj.tmp"
    _vipd_err "compiling $VIPD_TUN_BPF_SRC failed"
    return 1
  }
  mv -f "$obj.tmp" "$obj"
  printf '%s\n' "$@" >"$obj.flags"
}

vipd_rs_tun_setup() { # PREFIX I VIP4[,VIP4...] [VIP6[,VIP6...]]
  local p=${1:-} i=${2:-} vip4s=${3:-} vip6s=${4:-} ns dev state rs4 rs6 obj a
  local advmss4=${VIPD_TUN_ADVMSS4-1440} advmss6=${VIPD_TUN_ADVMSS6-1400}
  local defines=() extra=() mss4=() mss6=()
  _vipd_check_prefix "$p" || return 1
  if [ -z "$vip4s" ]; then
    _vipd_err "vipd_rs_tun_setup PREFIX I VIP4[,VIP4...] [VIP6[,VIP6...]]"
    return 1
  fi
  _vipd_check_bed_rs "$p" "$i" || return 1
  state=$(_vipd_state "$p")
  command -v tc >/dev/null 2>&1 || {
    _vipd_err "tc not found (scripts/setup installs iproute2)"
    return 1
  }
  ns=$p-rs$i dev=$p-rs$i rs4=10.77.0.$((20 + i)) rs6=fd00:77::$((20 + i))

  # 1. the program, for this server's addresses and the VIPs
  a=$(_vipd_tun_defines "$rs4" "$rs6" "$vip4s" "$vip6s") || return 1
  mapfile -t defines <<<"$a"
  if [ -n "${VIPD_TUN_CFLAGS:-}" ]; then
    read -ra extra <<<"$VIPD_TUN_CFLAGS"
    defines+=("${extra[@]}")
  fi
  obj=$state/ipip_decap-rs$i.o
  _vipd_tun_build "$obj" "${defines[@]}" || return 1
  # 2. attached to DEV's ingress (replace: running it again swaps the program in place)
  ip netns exec "$ns" tc qdisc replace dev "$dev" clsact || return 1
  ip netns exec "$ns" tc filter replace dev "$dev" ingress pref 49 handle 1 \
    bpf direct-action obj "$obj" sec tc || {
    _vipd_err "rs$i: attaching $obj to $dev ingress failed"
    return 1
  }
  # 3. VIPs on lo, no ARP for them on the segment
  _vipd_sysctl "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    "net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2" || return 1
  for a in ${vip4s//,/ }; do ip -n "$ns" addr replace "$a/32" dev lo || return 1; done
  for a in ${vip6s//,/ }; do ip -n "$ns" addr replace "$a/128" dev lo nodad || return 1; done
  # 4. strict reverse-path filter on DEV (decapsulated packets come in on DEV, from clients
  #    routed back through DEV)
  _vipd_sysctl "$ns" "net.ipv4.conf.$dev.rp_filter=1" || return 1
  # 5. default routes via the router, clients told to send segments that fit once encapsulated
  [ -n "$advmss4" ] && mss4=(advmss "$advmss4")
  [ -n "$advmss6" ] && mss6=(advmss "$advmss6")
  ip -n "$ns" route replace default via "$VIPD_ROUTER4" dev "$dev" "${mss4[@]}" || return 1
  ip -n "$ns" -6 route replace default via "$VIPD_ROUTER6" dev "$dev" "${mss6[@]}" || return 1
}

# Detach the program again (VIPs, sysctls and routes stay). For tests: "without decapsulation".
vipd_rs_tun_detach() { # PREFIX I
  local p=${1:-} i=${2:-}
  _vipd_check_prefix "$p" || return 1
  ip netns exec "$p-rs$i" tc filter del dev "$p-rs$i" ingress pref 49 2>/dev/null || true
}
