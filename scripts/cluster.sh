#!/usr/bin/env bash
# A synshare test cluster in network namespaces.
#
#   scripts/cluster.sh up [--nodes N] [--weights w1,w2,...] [--layout rendezvous|ranges]
#                         [--hugepages auto|off] [--workers W] [--mode static|peer|coordinator]
#                         [--cpu on|off]   (off: availability ignores CPU load)
#                         [--ports 80,443,...] (TCP ports of both VIPs, each with an HTTP server; default 80)
#                         [--rules 'RULE, ...'] (the VIPs' port rules, RON: (ports: "80", affinity: client), ...)
#                         [--service httpd|nginx] (the HTTP server on each node; default
#                         httpd, scripts/httpd.py; nginx answers / the same way)
#   scripts/cluster.sh up-segments [--weights w1,w2,w3]
#                         two segments (patent Fig. 6): node1 on A, node2 on A and
#                         B, node3 on B; peer mode, availability ignores CPU
#   scripts/cluster.sh down
#   scripts/cluster.sh status
#   scripts/cluster.sh stop-node I | start-node I | kill-node I
#   scripts/cluster.sh add-node I [JOIN]   (peer mode) a new node I that
#                         starts with `join` (default 192.0.2.21:7946) and no
#                         peers; it holds nothing until `synshare members add`
#
# Topology (documentation addresses only):
#   ss-switch   a Linux bridge, the switch (floods the unicast cluster MAC)
#   ss-client   192.0.2.10/24, 2001:db8::10/64
#   ss-nodeI    veth "wire" to the switch, driven by `synshare node` through
#               net_af_packet and kept from the kernel; TAP "ss-tap" as the
#               exception path with the kernel's 192.0.2.2I/24, 2001:db8::2I/64
#               and the VIPs 192.0.2.100, 2001:db8::100 on lo; a real HTTP
#               server (scripts/httpd.py, or nginx with --service nginx) on
#               port 80 answering "nodeI", in its own CPU cgroup ss-nodeI
#               (quota: half a core).
#   ss-coord    (--mode coordinator) 192.0.2.9, running `synshare coordinator`
# Modes: static shares from --weights; peer: the nodes exchange authenticated
# heartbeats (UDP 7946) and shares follow measured availability times the
# weights; coordinator: the same, with a coordinator computing the table.
# State (configs, logs, pids) lives in $SS_STATE (default /tmp/ss-cluster).
# SS_IDLE='(empty_polls: N, sleep_us: U)' sets the workers' idle back-off of `up`
# (default (empty_polls: 64, sleep_us: 100); scripts/e2e.sh --idle).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${SS_STATE:-/tmp/ss-cluster}
BIN=${SS_BIN:-$ROOT/target/release/synshare}
VIP4=192.0.2.100
VIP6=2001:db8::100
CLUSTER_MAC=02:5e:00:00:01:00
KEY=synshare-test-cluster-key
# The VIPs' TCP ports (each with an HTTP server) and port rules (up --ports, --rules).
PORTS=80
RULES=""

log() { echo "cluster: $*" >&2; }
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
node_mac() { printf '02:00:00:00:00:%02x' "$((0x20 + $1))"; }

our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ss-(switch|client|client2|coord|spectator|node[0-9]+)$' || true
}

# A CPU cgroup per node for its service.
source "$ROOT/scripts/cgroup.sh"
cgroup_remove() {
  local d
  for d in $(cgroup_dirs "$1"); do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
}

kill_pidfile() {
  local f=$1 sig=${2:-TERM}
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid" 2>/dev/null || true
    # Dead, or a zombie nobody reaps (its parent shell is gone).
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      case $(ps -o stat= -p "$pid" 2>/dev/null) in Z*) break ;; esac
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  # Nodes get SIGINT: stop at once (SIGTERM would drain first).
  for f in "$STATE"/node*.pid; do
    [ -e "$f" ] && kill_pidfile "$f" INT
  done
  for f in "$STATE"/httpd*.pid "$STATE"/nginx*.pid "$STATE"/coord.pid "$STATE"/burn*.pid; do
    [ -e "$f" ] && kill_pidfile "$f"
  done
  # Anything still running inside our namespaces is ours.
  for n in $(our_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  sleep 0.3
  for n in $(our_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  for n in $(seq 1 16); do cgroup_remove "ss-node$n"; done
  rm -f /run/synshare/ss-node*.sock /run/synshare/ss-coord.sock
  log "down"
}

# fresh_state NODES MODE: a clean slate for a new cluster.
fresh_state() {
  [ -x "$BIN" ] || { log "$BIN missing: run scripts/setup.sh"; exit 1; }
  down 2>/dev/null || true
  mkdir -p "$STATE" /run/synshare
  rm -f "$STATE"/*.log
  # The exchange keeps its consensus state across restarts; a new cluster
  # starts from none.
  rm -rf "$STATE/state"
  echo "$1" > "$STATE/nodes"
  echo "$2" > "$STATE/mode"
  echo "${3:-httpd}" > "$STATE/service"
}

# start_service I: node I's HTTP server on each of the VIPs' ports, in
# its namespace and its CPU cgroup: scripts/httpd.py (one process per
# port) or, with --service nginx, one nginx (a master and one worker)
# answering every path as httpd.py answers /: "nodeI\n<client address>\n"
# with an X-Node header. nginx's files are under $STATE/nginxI/.
start_service() {
  local i=$1 n=ss-node$1 port
  if [ "$(cat "$STATE/service" 2>/dev/null)" = nginx ]; then
    local d="$STATE/nginx$i" listen=""
    mkdir -p "$d/tmp"
    for port in ${PORTS//,/ }; do
      listen+="    listen $port backlog=4096; listen [::]:$port ipv6only=on backlog=4096;"$'\n'
    done
    nginx_conf "node$i" "$d" "$STATE/nginx$i.pid" "$listen" > "$d/nginx.conf"
    # Into the cgroup before exec: the worker nginx forks is born there.
    # nsenter, not `ip netns exec`, which would hide the host's cgroup tree.
    local dirs; dirs=$(cgroup_dirs "ss-node$i")
    nsenter --net="/var/run/netns/$n" sh -c 'for d in $1; do echo $$ > "$d/cgroup.procs" 2>/dev/null; done; shift; exec "$@"' \
      sh "$dirs" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$STATE/nginx$i.log" 2>&1 &
    echo $! > "$STATE/nginx$i.pid"
    # Listening before the node starts (its service probe).
    for _ in $(seq 50); do
      ns "$n" ss -Hltn "sport = :${PORTS%%,*}" | grep -q . && return 0
      kill -0 "$(cat "$STATE/nginx$i.pid")" 2>/dev/null || break
      sleep 0.1
    done
    log "node$i: nginx did not start:"; tail -n 5 "$STATE/nginx$i.log" "$d/error.log" >&2 || true
    return 1
  fi
  # Started directly (not through a shell function) so that $! is the
  # server's own pid, the one that goes into the cgroup.
  ip netns exec "$n" python3 "$ROOT/scripts/httpd.py" --name "node$i" --port 80 >"$STATE/httpd$i.log" 2>&1 &
  echo $! > "$STATE/httpd$i.pid"
  cgroup_add "ss-node$i" "$(cat "$STATE/httpd$i.pid")"
  for port in ${PORTS//,/ }; do
    [ "$port" = 80 ] && continue
    ip netns exec "$n" python3 "$ROOT/scripts/httpd.py" --name "node$i" --port "$port" >"$STATE/httpd$i-$port.log" 2>&1 &
    echo $! > "$STATE/httpd$i-$port.pid"
    cgroup_add "ss-node$i" "$(cat "$STATE/httpd$i-$port.pid")"
  done
}

# nginx_conf NAME DIR PIDFILE LISTEN: an nginx configuration (daemon off,
# one worker, no access log, its files under DIR) answering every path
# with "NAME\n<client address>\n" and an X-Node: NAME header, as
# scripts/httpd.py answers /. LISTEN: its listen lines. scripts/e2e.sh
# prints the same for the kernel-only peer (`cluster.sh nginx-conf`).
nginx_conf() {
  cat <<EOF
# Generated by scripts/cluster.sh: $1's service.
daemon off;
worker_processes 1;
pid $3;
error_log $2/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $2/tmp/body;
  proxy_temp_path $2/tmp/proxy;
  fastcgi_temp_path $2/tmp/fastcgi;
  uwsgi_temp_path $2/tmp/uwsgi;
  scgi_temp_path $2/tmp/scgi;
  server {
$4    default_type text/plain;
    add_header X-Node $1 always;
    location / { return 200 "$1\n\$remote_addr\n"; }
  }
}
EOF
}

write_config() {
  local i=$1 n=$2 weights=$3 layout=$4 huge=$5 workers=$6 mode=$7 cpu=$8
  local members="" w peers="" exchange="None" coord="None"
  for j in $(seq 1 "$n"); do
    w=$(echo "$weights" | cut -d, -f"$j")
    members+="(id: $j, weight: ${w:-1}.0), "
    [ "$j" != "$i" ] && peers+="$j: \"192.0.2.$((20 + j)):7946\", "
  done
  members=${members%, }
  w=$(echo "$weights" | cut -d, -f"$i")
  [ "$mode" = coordinator ] && coord='Some("192.0.2.9:7946")'
  if [ "$mode" != static ]; then
    exchange="Some((peers: {${peers%, }}, coordinator: $coord, key: \"$KEY\", state_dir: \"$STATE/state\", interval_ms: 100, timeout_ms: 350, lease_ms: 350, min_epoch_ms: 500, hysteresis: 0.05))"
  fi
  # Workers alternate between the two cores; the control core takes the other.
  local main=$(( i % 2 == 1 ? 0 : 1 ))
  local lcores="0,1"
  if [ "$workers" -gt 1 ]; then
    # More lcores than the machine's two CPUs: map them (EAL --lcores).
    lcores="0@0"; main=0
    for w in $(seq 1 "$workers"); do lcores+=",$w@$(( (w + i) % 2 ))"; done
  fi
  cat > "$STATE/node$i.ron" <<EOF
// Generated by scripts/cluster.sh for node$i of $n.
(
    name: "node$i",
    id: $i,
    eal: (
        lcores: "$lcores",
        main_lcore: Some($main),
        memory_mb: 256,
        hugepages: $huge,
        file_prefix: "ss-node$i",
    ),
    wire: (device: "net_af_packet0,iface=wire,qpairs=$workers"),
    exception: (iface: "ss-tap", addresses: ["192.0.2.$((20 + i))/24", "2001:db8::$((20 + i))/64"]),
    cluster_mac: "$CLUSTER_MAC",
    vips: [
        (addr: "$VIP4", tcp_ports: [$PORTS], udp_ports: [53], rules: [$RULES]),
        (addr: "$VIP6", tcp_ports: [$PORTS], udp_ports: [53], rules: [$RULES]),
    ],
    workers: $workers,
    idle: ${SS_IDLE:-(empty_polls: 64, sleep_us: 100)},
    flow_table: (capacity: 65536),
    sharing: (
        buckets: 65536,
        layout: $layout,
        drain_ms: ${SS_DRAIN_MS:-60000},
        members: [$members],
    ),
    status_socket: Some("/run/synshare/ss-node$i.sock"),
    stop_drain_s: 5,
    metrics: Some("127.0.0.1:9746"),
    exchange: $exchange,
    availability: (
        capacity: ${w:-1}.0,
        sample_ms: 250,
        cpu: $( [ "$cpu" = off ] && echo none || echo "cgroup(\"ss-node$i\")"),
        service_probe: Some("127.0.0.1:80"),
    ),
)
EOF
}

write_coordinator_config() {
  local n=$1 layout=$2 peers=""
  for j in $(seq 1 "$n"); do peers+="$j: \"192.0.2.$((20 + j)):7946\", "; done
  cat > "$STATE/coord.ron" <<EOF
// Generated by scripts/cluster.sh: the coordinator of $n nodes.
(
    name: "ss-coord",
    exchange: (bind: "0.0.0.0:7946", peers: {${peers%, }}, key: "$KEY", state_dir: "$STATE/state", interval_ms: 100, timeout_ms: 350, lease_ms: 350),
    buckets: 65536,
    layout: $layout,
    status_socket: Some("/run/synshare/ss-coord.sock"),
    metrics: Some("127.0.0.1:9746"),
)
EOF
}

start_coordinator() {
  ip netns exec ss-coord "$BIN" coordinator --config "$STATE/coord.ron" >"$STATE/coord.log" 2>&1 &
  echo $! > "$STATE/coord.pid"
}

# Waits until every node is at the same epoch and every bucket is held.
wait_converged() {
  local n; n=$(cat "$STATE/nodes")
  for _ in $(seq 100); do
    if python3 "$ROOT/scripts/converged.py" "$n" "$BIN"; then return 0; fi
    sleep 0.1
  done
  log "the nodes did not converge in 10 s"
  return 1
}

start_node() {
  local i=$1 n=ss-node$1
  rm -f "$STATE/node$i.log"
  # nsenter, not `ip netns exec`: the latter mounts a fresh /sys, and the
  # node reads its service's cgroup under the host's /sys/fs/cgroup.
  nsenter --net="/var/run/netns/$n" "$BIN" node --config "$STATE/node$i.ron" >"$STATE/node$i.log" 2>&1 &
  echo $! > "$STATE/node$i.pid"
  # Wait for the TAP, then give the kernel its addresses.
  for _ in $(seq 100); do
    ns "$n" ip link show ss-tap >/dev/null 2>&1 && break
    if ! kill -0 "$(cat "$STATE/node$i.pid")" 2>/dev/null; then
      log "node$i exited:"; tail -20 "$STATE/node$i.log" >&2; return 1
    fi
    sleep 0.1
  done
  ns "$n" ip link show ss-tap >/dev/null 2>&1 || { log "node$i: no TAP after 10 s"; tail -20 "$STATE/node$i.log" >&2; return 1; }
  if [ "$(cat "$STATE/mode" 2>/dev/null)" = segments ]; then
    ns "$n" sysctl -qw net.ipv4.conf.ss-tap.arp_announce=2 net.ipv4.conf.ss-tap.arp_ignore=1 \
      net.ipv6.conf.ss-tap.accept_dad=0 net.ipv6.conf.ss-tap.dad_transmits=0
    # Segment A on ss-tap for node1 and node2; B on ss-tap (node3) or ss-tap2 (node2).
    if [ "$i" -le 2 ]; then
      ns "$n" ip addr add "192.0.2.$((20 + i))/25" dev ss-tap
      ns "$n" ip addr add "2001:db8:a::$((20 + i))/64" dev ss-tap nodad
    fi
    if [ "$i" = 3 ]; then
      ns "$n" ip addr add "192.0.2.$((150 + i))/25" dev ss-tap
      ns "$n" ip addr add "2001:db8:b::$((150 + i))/64" dev ss-tap nodad
    fi
    if [ "$i" = 2 ]; then
      for _ in $(seq 100); do ns "$n" ip link show ss-tap2 >/dev/null 2>&1 && break; sleep 0.1; done
      ns "$n" sysctl -qw net.ipv4.conf.ss-tap2.arp_announce=2 net.ipv4.conf.ss-tap2.arp_ignore=1 \
        net.ipv6.conf.ss-tap2.accept_dad=0 net.ipv6.conf.ss-tap2.dad_transmits=0
      ns "$n" ip addr add "192.0.2.$((150 + i))/25" dev ss-tap2
      ns "$n" ip addr add "2001:db8:b::$((150 + i))/64" dev ss-tap2 nodad
      ns "$n" ip link set ss-tap2 up
      ns "$n" ethtool -K ss-tap2 tx off >/dev/null 2>&1 || true
    fi
    ns "$n" ip link set ss-tap up
    # The kernel must compute its checksums: the wire does not.
    ns "$n" ethtool -K ss-tap tx off >/dev/null 2>&1 || true
  fi
  # Otherwise the node sets its TAP up itself (exception.addresses).
  for _ in $(seq 100); do
    [ -S "/run/synshare/ss-node$i.sock" ] && break
    sleep 0.1
  done
}

up() {
  local nodes=1 weights="" layout=rendezvous huge=auto workers=1 mode=static cpu=on mac=unicast service=httpd
  while [ $# -gt 0 ]; do
    case $1 in
      --mode) mode=$2; shift 2 ;;
      --mac) mac=$2; shift 2 ;;
      --cpu) cpu=$2; shift 2 ;;
      --nodes) nodes=$2; shift 2 ;;
      --weights) weights=$2; shift 2 ;;
      --layout) layout=$2; shift 2 ;;
      --hugepages) huge=$2; shift 2 ;;
      --workers) workers=$2; shift 2 ;;
      --ports) PORTS=$2; shift 2 ;;
      --rules) RULES=$2; shift 2 ;;
      --service) service=$2; shift 2 ;;
      *) log "unknown option $1"; exit 2 ;;
    esac
  done
  case $service in
    httpd) ;;
    nginx) command -v nginx >/dev/null || { log "nginx missing: run scripts/setup.sh"; exit 1; } ;;
    *) log "--service: httpd or nginx"; exit 2 ;;
  esac
  fresh_state "$nodes" "$mode" "$service"

  ip netns add ss-switch
  ns ss-switch ip link add br0 type bridge
  if [ "$mac" = multicast ]; then
    # The cluster MAC of group 239.255.2.100 (from the VIP 192.0.2.100);
    # the switch snoops IGMP/MLD and queries every 5 s; a membership not
    # reported again for 12 s expires.
    CLUSTER_MAC=01:00:5e:7f:02:64
    ns ss-switch ip link set br0 type bridge mcast_snooping 1 mcast_querier 1 \
      mcast_query_interval 500 mcast_query_response_interval 200 mcast_membership_interval 1200 \
      mcast_startup_query_interval 100
  fi
  echo "$CLUSTER_MAC" > "$STATE/cluster_mac"
  ns ss-switch ip link set br0 up
  ns ss-switch ip link set lo up

  add_host ss-client ss-c
  ns ss-client ip link set eth0 address 02:00:00:00:00:10
  ns ss-client sysctl -qw net.ipv6.conf.eth0.accept_dad=0
  ns ss-client ip addr add 192.0.2.10/24 dev eth0
  ns ss-client ip addr add 2001:db8::10/64 dev eth0 nodad
  ns ss-client ip link set eth0 up
  # af_packet on the nodes reads frames as sent: no partial checksums.
  ns ss-client ethtool -K eth0 tx off >/dev/null
  if [ "$mac" = multicast ]; then
    # A host on the switch that is no member: the cluster group must not
    # be registered on its port.
    add_host ss-spectator ss-sp
    ns ss-spectator ip addr add 192.0.2.11/24 dev eth0
    ns ss-spectator ip link set eth0 up
  fi

  if [ "$mode" = coordinator ]; then
    add_host ss-coord ss-k
    ns ss-coord ip addr add 192.0.2.9/24 dev eth0
    ns ss-coord ip link set eth0 up
    ns ss-coord ethtool -K eth0 tx off >/dev/null
    write_coordinator_config "$nodes" "$layout"
    start_coordinator
  fi
  for i in $(seq 1 "$nodes"); do
    local n=ss-node$i
    ip netns add "$n"
    plug "$n" wire br0 "ss-n$i"
    if [ "$mac" = multicast ]; then
      # The Linux bridge snoops by IP group: once its querier runs, a frame
      # to a multicast MAC with a unicast IP (a VIP) goes only to multicast
      # router ports. A hardware switch forwards by the group's MAC to the
      # ports that joined it; marking the node ports as router ports stands
      # in for that here. Which ports joined is read from the bridge's own
      # table (bridge mdb), which is what the nodes control.
      ns ss-switch bridge link set dev "ss-n$i-br" mcast_router 2
    fi
    ns "$n" ip link set lo up
    ns "$n" ip link set wire address "$(node_mac "$i")"
    # Keep the kernel off the wire: no IPv6, no ARP answers, and every
    # frame dropped at ingress (af_packet still sees it before that).
    keep_kernel_off "$n" wire
    ns "$n" ip addr add "$VIP4/32" dev lo
    ns "$n" ip addr add "$VIP6/128" dev lo
    write_config "$i" "$nodes" "${weights:-}" "$layout" "$huge" "$workers" "$mode" "$cpu"
    cgroup_create "ss-node$i"
    start_service "$i" || exit 1
    start_node "$i"
  done
  if [ "$mode" != static ]; then wait_converged || exit 1; fi
  # Let the client learn the nodes and the VIP.
  ns ss-client ping -c1 -W2 "$VIP4" >/dev/null 2>&1 || true
  log "up: $nodes node(s), weights ${weights:-equal}, layout $layout; state in $STATE"
}

# A veth from the switch's bridge BR into namespace NS as interface IF.
plug() {  # plug NS IF BR TMPNAME
  ip link add "$4" type veth peer name "$4-br"
  ip link set "$4" netns "$1"
  ip link set "$4-br" netns ss-switch
  ns ss-switch ip link set "$4-br" master "$3" up
  ns "$1" ip link set "$4" name "$2"
}

add_host() {  # add_host NS TMPNAME: a namespace NS with its eth0 on the switch's br0
  ip netns add "$1"
  plug "$1" eth0 br0 "$2"
  ns "$1" ip link set lo up
}

# The kernel of a node namespace kept off its wire interface IF.
keep_kernel_off() {  # keep_kernel_off NS IF
  ns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1" "net.ipv4.conf.$2.arp_ignore=8" "net.ipv4.conf.$2.rp_filter=0" \
    net.ipv4.conf.all.rp_filter=0
  ns "$1" ip link set "$2" up
  ns "$1" ethtool -K "$2" tx off rx off >/dev/null 2>&1 || true
  ns "$1" nft -f - <<EOF
table netdev ss_$2 {
  chain ingress { type filter hook ingress device "$2" priority 0; policy drop; }
}
EOF
}

# segment_config S PORT IFACE TAP PEERS: the config lines of segment S
# (0: A, 1: B) for a node whose DPDK port PORT (net_af_packetPORT) is
# IFACE, its exception interface TAP, its peers PEERS (a RON map's body).
segment_config() {
  local v4=192.0.2.100 v6=2001:db8:a::100
  [ "$1" = 1 ] && v4=192.0.2.200 v6=2001:db8:b::200
  cat <<EOF
wire: (device: "net_af_packet$2,iface=$3"),
    exception: (iface: "$4"),
    cluster_mac: "02:5e:00:00:0$(($1 + 1)):00",
    vips: [(addr: "$v4", tcp_ports: [80]), (addr: "$v6", tcp_ports: [80])],
    sharing: (members: []),
    exchange: Some((bind: "0.0.0.0:$((7946 + $1))", peers: {$5}, key: "$KEY", state_dir: "$STATE/state", segment: $1, min_epoch_ms: 500, hysteresis: 0.05)),
EOF
}

# Two segments: A (192.0.2.0/25, VIP 192.0.2.100, client ss-client) and
# B (192.0.2.128/25, VIP 192.0.2.200, client ss-client2). node1 is on A,
# node2 on A and B (one member set and table per segment), node3 on B.
up_segments() {
  local weights=1,1,3
  while [ $# -gt 0 ]; do
    case $1 in
      --weights) weights=$2; shift 2 ;;
      *) log "unknown option $1"; exit 2 ;;
    esac
  done
  fresh_state 3 segments
  ip netns add ss-switch
  ns ss-switch ip link set lo up
  for br in br0 br1; do ns ss-switch ip link add "$br" type bridge; ns ss-switch ip link set "$br" up; done
  local c
  for c in "ss-client br0 192.0.2.10/25 02:00:00:00:00:10 2001:db8:a::10/64" "ss-client2 br1 192.0.2.138/25 02:00:00:00:00:11 2001:db8:b::10/64"; do
    set -- $c
    ip netns add "$1"
    plug "$1" eth0 "$2" "ss-t$RANDOM"
    ns "$1" ip link set lo up
    ns "$1" ip link set eth0 address "$4"
    ns "$1" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
    ns "$1" ip addr add "$3" dev eth0
    ns "$1" ip addr add "$5" dev eth0 nodad
    ns "$1" ip link set eth0 up
    ns "$1" ethtool -K eth0 tx off >/dev/null
  done
  local i w
  for i in 1 2 3; do
    local n=ss-node$i
    ip netns add "$n"
    ns "$n" ip link set lo up
    w=$(echo "$weights" | cut -d, -f"$i")
    if [ "$i" -le 2 ]; then
      plug "$n" wire br0 "ss-a$i"
      ns "$n" ip link set wire address "$(node_mac "$i")"
      keep_kernel_off "$n" wire
      ns "$n" ip addr add 192.0.2.100/32 dev lo
      ns "$n" ip addr add 2001:db8:a::100/128 dev lo
    fi
    if [ "$i" -ge 2 ]; then
      local bif=wire; [ "$i" = 2 ] && bif=wire2
      plug "$n" "$bif" br1 "ss-b$i"
      ns "$n" ip link set "$bif" address "$(printf '02:00:00:00:01:%02x' "$((0x20 + i))")"
      keep_kernel_off "$n" "$bif"
      ns "$n" ip addr add 192.0.2.200/32 dev lo
      ns "$n" ip addr add 2001:db8:b::200/128 dev lo
    fi
    local lcores="0,1" main=$(( i % 2 == 1 ? 0 : 1 )) body extra=""
    case $i in
      1) body=$(segment_config 0 0 wire ss-tap '2: "192.0.2.22:7946"') ;;
      2) body=$(segment_config 0 0 wire ss-tap '1: "192.0.2.21:7946"')
         extra="segments: [($(segment_config 1 1 wire2 ss-tap2 '3: "192.0.2.153:7947"'))],"
         lcores="0@0,1@1,2@0"; main=0 ;;
      3) body=$(segment_config 1 0 wire ss-tap '2: "192.0.2.152:7947"') ;;
    esac
    cat > "$STATE/node$i.ron" <<EOF
// Generated by scripts/cluster.sh up-segments for node$i.
(
    name: "node$i",
    id: $i,
    eal: (lcores: "$lcores", main_lcore: Some($main), memory_mb: 256, file_prefix: "ss-node$i"),
    $body
    $extra
    idle: (empty_polls: 64, sleep_us: 100),
    flow_table: (capacity: 65536),
    status_socket: Some("/run/synshare/ss-node$i.sock"),
    availability: (capacity: ${w:-1}.0, cpu: none, service_probe: Some("127.0.0.1:80")),
)
EOF
    cgroup_create "ss-node$i"
    ip netns exec "$n" python3 "$ROOT/scripts/httpd.py" --name "node$i" --port 80 >"$STATE/httpd$i.log" 2>&1 &
    echo $! > "$STATE/httpd$i.pid"
    start_node "$i" || exit 1
  done
  for _ in $(seq 100); do
    if python3 "$ROOT/scripts/converged.py" segments "$BIN"; then break; fi
    sleep 0.1
  done
  log "up: two segments: node1 on A, node2 on A and B, node3 on B; weights $weights"
}

# A node added to a running peer-mode cluster: its namespace, service and
# a configuration that knows no peer, only a member to join through.
add_node() {  # add_node I [JOIN]
  local i=$1 join=${2:-192.0.2.21:7946} n=ss-node$1
  ip netns add "$n"
  plug "$n" wire br0 "ss-n$i"
  ns "$n" ip link set lo up
  ns "$n" ip link set wire address "$(node_mac "$i")"
  keep_kernel_off "$n" wire
  ns "$n" ip addr add "$VIP4/32" dev lo
  ns "$n" ip addr add "$VIP6/128" dev lo
  write_config "$i" "$i" "" rendezvous auto 1 peer on
  sed -i "s/peers: {[^}]*}, coordinator: None,/peers: {}, coordinator: None, join: \"$join\",/" "$STATE/node$i.ron"
  grep -q "join: \"$join\"" "$STATE/node$i.ron" || { log "node$i: no join in its configuration"; return 1; }
  cgroup_create "ss-node$i"
  start_service "$i"
  start_node "$i"
}

status() {
  local n; n=$(cat "$STATE/nodes" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    "$BIN" status --socket "/run/synshare/ss-node$i.sock" || echo "node$i: not answering"
  done
}

case ${1:-} in
  up) shift; up "$@" ;;
  up-segments) shift; up_segments "$@" ;;
  down) down ;;
  status) status ;;
  stop-node) kill_pidfile "$STATE/node$2.pid" TERM ;;
  kill-node) kill_pidfile "$STATE/node$2.pid" KILL ;;
  start-node) start_node "$2" ;;
  nginx-conf) shift; nginx_conf "$@" ;;  # NAME DIR PIDFILE LISTEN (scripts/e2e.sh)
  add-node) shift; add_node "$@" ;;
  stop-coordinator) kill_pidfile "$STATE/coord.pid" TERM ;;
  start-coordinator) start_coordinator ;;
  wait-converged) wait_converged ;;
  burn)  # burn I: load node I's service cgroup with a busy loop
    ip netns exec "ss-node$2" python3 -c 'while True: pass' >/dev/null 2>&1 &
    echo $! > "$STATE/burn$2.pid"; cgroup_add "ss-node$2" "$!" ;;
  unburn) kill_pidfile "$STATE/burn$2.pid" KILL ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
