# shellcheck shell=bash
# vipd scale-out test bed: several vipd boxes behind a router that spreads each VIP's flows
# over them by ECMP, the VIPs announced over BGP. A bash library, safe under `set -euo
# pipefail`: it builds netns.sh's bed in DR mode (client, router with the server segment's
# bridge, real servers with the VIP on lo, default route via the router; netns.sh's LB
# namespace stays unused) and adds to it:
#
#   router ns  PREFIX-router   no static VIP routes: bird2 (AS 65000, from
#       |                      docs/examples/bird-router.conf) learns them from the boxes over
#       |                      eBGP + BFD (100 ms x 3) and installs one multipath route per
#       |                      VIP (merge paths); ECMP hashes the 5-tuple
#       |                      (fib_multipath_hash_policy=3, fib_multipath_hash_fields=0x37)
#       +-- bridge port PREFIX-bbK -- PREFIX-bK in PREFIX-boxK (box K = 1..N_BOXES): no IP, no
#                              ARP, no IPv6 (vipd's DPDK port through net_af_packet),
#                              MAC 02:77:00:00:01:<K hex>; vipd's kernel interface PREFIX-kK
#                              carries 10.77.0.(10+K)/24; bird2 (AS 65001, from
#                              docs/examples/bird-vipd.conf), its control socket and vipd's
#                              protocols file in the box's state dir
#   client ns                  a small TCP receive buffer (see _vipd_scaleout_build)
#
# Functions (PREFIX as netns.sh: 1-8 letters/digits, starting with a letter):
#   vipd_scaleout_up PREFIX N_BOXES N_RS   build, start every bird; all or nothing
#   vipd_scaleout_down PREFIX              kill everything in the bed's namespaces, delete them
#   vipd_scaleout_info PREFIX              addresses and paths as shell assignments
#   vipd_scaleout_box_dir PREFIX K         box K's state dir (bird.ctl, vips.conf, bird.log)
#   vipd_scaleout_birdc PREFIX router|K CMD...   birdc on the router's or box K's bird
#   vipd_scaleout_nexthops PREFIX VIP      the router's next hops for VIP, one per line
#
# The bed's state (pid files, logs, bird configurations and sockets) lives in
# ${VIPD_TESTBED_STATE:-/tmp/vipd-testbed}/PREFIX/, as netns.sh's.

# shellcheck source=netns.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns.sh"
VIPD_SCALEOUT_LIB=$VIPD_TESTBED_LIB_DIR/scaleout.sh
VIPD_SCALEOUT_EXAMPLES=$(cd "$VIPD_TESTBED_LIB_DIR/../../docs/examples" && pwd)
VIPD_SCALEOUT_MAX_BOXES=9
VIPD_SCALEOUT_BOX_AS=65001

_vipd_box_mac() { printf '02:77:00:00:01:%02x' "$1"; }


vipd_scaleout_box_dir() { echo "$(_vipd_state "$1")/box$2"; }

# netns.sh's teardown knows the box namespaces: it kills what runs there (a stopped vipd too,
# with KILL after its TERM grace) and deletes them with the rest.
vipd_scaleout_down() { vipd_testbed_down "$@"; }

vipd_scaleout_up() {
  local p=${1:-} boxes=${2:-} n=${3:-} state tool
  _vipd_check_prefix "$p" || return 1
  if ! [[ $boxes =~ ^[0-9]+$ ]] || [ "$boxes" -lt 1 ] || [ "$boxes" -gt "$VIPD_SCALEOUT_MAX_BOXES" ]; then
    _vipd_err "vipd_scaleout_up PREFIX N_BOXES N_RS: N_BOXES must be 1..$VIPD_SCALEOUT_MAX_BOXES (got '$boxes')"
    return 1
  fi
  for tool in tc bird birdc; do
    command -v "$tool" >/dev/null 2>&1 || {
      _vipd_err "$tool not found (scripts/setup installs it)"
      return 1
    }
  done
  vipd_testbed_up "$p" "$n" dr || return 1
  state=$(_vipd_state "$p")
  echo "$boxes" >"$state/n_boxes"
  if ! bash -c 'set -Eeuo pipefail
      trap '\''echo "vipd-testbed: vipd_scaleout_up failed: line $LINENO: $BASH_COMMAND" >&2'\'' ERR
      source "$1"; shift; _vipd_scaleout_build "$@"' _ "$VIPD_SCALEOUT_LIB" "$p" "$boxes"; then
    vipd_scaleout_down "$p" || true
    return 1
  fi
}

# The router's bird.conf: docs/examples/bird-router.conf with the bed's addresses and one
# session per box.
_vipd_scaleout_router_conf() { # PREFIX N_BOXES
  local k
  sed -e 's/10\.0\.100\.0\/24/10.77.100.0\/24/g' -e 's/10\.0\.0\./10.77.0./g' \
    -e '/^protocol bgp box[0-9]* from vipd_box/d' "$VIPD_SCALEOUT_EXAMPLES/bird-router.conf"
  for k in $(seq 1 "$2"); do
    echo "protocol bgp box$k from vipd_box { neighbor 10.77.0.$((10 + k)) as $VIPD_SCALEOUT_BOX_AS; }"
  done
}

# Box K's bird.conf: docs/examples/bird-vipd.conf with the box's address and protocols file.
_vipd_scaleout_box_conf() { # PREFIX K
  local dir
  dir=$(vipd_scaleout_box_dir "$1" "$2")
  sed -e "s/10\.0\.0\.11/10.77.0.$((10 + $2))/g" -e 's/10\.0\.0\.1\b/10.77.0.1/g' \
    -e "s|/var/lib/vipd/bird-vips.conf|$dir/vips.conf|" "$VIPD_SCALEOUT_EXAMPLES/bird-vipd.conf"
}

# Runs in a child `bash -e` (see vipd_scaleout_up), on top of netns.sh's bed (client, router
# with the bridge, DR real servers; its LB namespace stays unused): the router's static VIP
# routes give way to BGP, ECMP hashes the 5-tuple, boxes join the bridge, bird runs.
_vipd_scaleout_build() {
  local p=$1 boxes=$2 k i dir state
  local r=$p-router br=$p-br0
  state=$(_vipd_state "$p")

  ip -n "$r" route del "$VIPD_VIP4/32"
  ip -n "$r" -6 route del "$VIPD_VIP6/128"
  _vipd_sysctl "$r" net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x37
  # A small receive window: a slow (rate-limited) download then keeps its server sending, and
  # its ACKs crossing a box, for its whole length, instead of landing in a multi-megabyte
  # socket buffer in the first second.
  _vipd_sysctl "$p-client" "net.ipv4.tcp_rmem=4096 65536 131072"

  # Boxes: the DPDK-owned veth end, silent kernel (as netns.sh's LB); bird waits for vipd's
  # kernel interface to bring its session up.
  for k in $(seq 1 "$boxes"); do
    local b=$p-box$k
    _vipd_new_ns "$b"
    ip -n "$b" link add "$p-b$k" address "$(_vipd_box_mac "$k")" type veth peer name "$p-bb$k" netns "$r"
    _vipd_sysctl "$b" "net.ipv6.conf.$p-b$k.disable_ipv6=1"
    ip -n "$b" link set "$p-b$k" arp off
    _vipd_offloads_off "$b" "$p-b$k"
    _vipd_offloads_off "$r" "$p-bb$k"
    ip -n "$r" link set "$p-bb$k" master "$br"
    ip -n "$r" link set "$p-bb$k" up
    ip -n "$b" link set "$p-b$k" up
    dir=$state/box$k
    mkdir -p "$dir"
    : >"$dir/vips.conf"
    _vipd_scaleout_box_conf "$p" "$k" >"$dir/bird.conf"
    bird -p -c "$dir/bird.conf"
    vipd_spawn "$p" "bird-box$k" "$b" bird -f -c "$dir/bird.conf" -s "$dir/bird.ctl" -P "$dir/bird.pid"
  done

  _vipd_scaleout_router_conf "$p" "$boxes" >"$state/router-bird.conf"
  bird -p -c "$state/router-bird.conf"
  vipd_spawn "$p" bird-router "$r" bird -f -c "$state/router-bird.conf" -s "$state/router.ctl" \
    -P "$state/router-bird.pid"
  for i in $(seq 1 50); do
    [ -S "$state/router.ctl" ] && [ -S "$state/box$boxes/bird.ctl" ] && return 0
    sleep 0.1
  done
  _vipd_err "bird did not open its control sockets: $(tail -n 3 "$state"/bird-*.log 2>/dev/null)"
  return 1
}

vipd_scaleout_birdc() { # PREFIX router|K CMD...
  local p=$1 who=$2 state sock ns
  shift 2
  state=$(_vipd_state "$p")
  if [ "$who" = router ]; then
    sock=$state/router.ctl ns=$p-router
  else
    sock=$state/box$who/bird.ctl ns=$p-box$who
  fi
  ip netns exec "$ns" birdc -s "$sock" "$@"
}

vipd_scaleout_nexthops() { # PREFIX VIP
  ip -n "$1-router" route show "$2/32" 2>/dev/null |
    grep -oE 'via [0-9.]+' | awk '{print $2}' | sort
}

vipd_scaleout_info() {
  local p=${1:-} state boxes k
  _vipd_check_prefix "$p" || return 1
  state=$(_vipd_state "$p")
  boxes=$(cat "$state/n_boxes" 2>/dev/null || echo 0)
  cat <<EOF
PREFIX=$p
NS_CLIENT=$p-client
NS_ROUTER=$p-router
ROUTER4=$VIPD_ROUTER4
ROUTER_CTL=$state/router.ctl
N_BOXES=$boxes
N_RS=$(_vipd_n_rs "$p")
EOF
  for k in $(seq 1 "$boxes"); do
    echo "NS_BOX_$k=$p-box$k"
    echo "BOX_IF_$k=$p-b$k"
    echo "BOX_ROUTER_PORT_$k=$p-bb$k"
    echo "BOX_KERNEL_IF_$k=$p-k$k"
    echo "BOX4_$k=10.77.0.$((10 + k))"
    echo "BOX_MAC_$k=$(_vipd_box_mac "$k")"
    echo "BOX_DIR_$k=$state/box$k"
  done
}
