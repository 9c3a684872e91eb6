#!/usr/bin/env bash
# End to end: new connections per second through the 3-node test cluster
# against the peer a user would pick instead, the same namespace shape run
# by the kernel alone, alternating, in one command:
#
#   scripts/e2e.sh                         # 3 rounds each of ab -n 3000 -c 16
#   scripts/e2e.sh --rounds 5 --requests 5000 --concurrency 32
#   scripts/e2e.sh --idle '(empty_polls: 64, sleep_us: 0)'   # the nodes' idle back-off
#   scripts/e2e.sh --profile               # also where the CPU went in each round
#
# synshare: `scripts/cluster.sh up --nodes 3 --service nginx` (static, equal
#   shares; the client ss-client, the switch ss-switch, nodes ss-node1..3,
#   nginx behind each node's TAP, in the node's CPU cgroup).
# kernel:   the same shape without synshare: ss-k-client (192.0.2.10), a
#   Linux bridge in ss-k-switch flooding the multicast cluster MAC
#   01:00:5e:7f:02:64 to every port (snooping off), ss-k-node1..3 (eth0 on
#   the bridge, 192.0.2.2I/24, the VIP 192.0.2.100/32 on lo, nginx the same
#   in a CPU cgroup ss-k-nodeI with the same quota). The client's neighbour
#   entry for the VIP is the cluster MAC. On each node's eth0, at the netdev
#   ingress hook (before conntrack and TCP), an nftables rule keeps only the
#   VIP's TCP segments whose `jhash ip saddr . tcp sport mod 3` is the node's
#   index - 1 and drops the rest; the kept ones are made PACKET_HOST (TCP
#   takes no segment addressed to a multicast MAC).
#
# Each round is `ab -n N -c C http://192.0.2.100/` from the client (a new
# connection per request), synshare then kernel, ROUNDS times. The nodes of
# the side not being measured are stopped (SIGSTOP) meanwhile, so that their
# idle polling does not count against the other. It prints each round's
# requests per second, the medians, the ratio synshare/kernel of the
# medians, the load average before and after, and tears everything down.
#
# Options: --rounds R (3), --requests N (3000), --concurrency C (16),
# --idle RON (SS_IDLE for cluster.sh: the workers' idle back-off),
# --cpu-quota off (no CPU quota on either side's nginx; default: half a
# core each, as cluster.sh gives its services), --profile, --perf DIR
# (`perf record -a -g` of the whole machine during each round, into
# DIR/perf-SIDE-ROUND.data), --down (tears down what a killed run left).
# Addresses: 192.0.2.0/24 only. Takes the test-cluster lock as the
# namespace tests do. Needs root, nginx and ab (scripts/setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLUSTER=$ROOT/scripts/cluster.sh
STATE=${SS_STATE:-/tmp/ss-cluster}
KSTATE=${SS_E2E_STATE:-/tmp/ss-e2e}
BIN=${SS_BIN:-$ROOT/target/release/synshare}
VIP=192.0.2.100
KMAC=01:00:5e:7f:02:64
SEED=0x5eed5eed
ROUNDS=3
REQUESTS=3000
CONC=16
PROFILE=0
PERF_DIR=""
QUOTA=on
IDLE=${SS_IDLE:-}
NODES=3

log() { echo "e2e: $*" >&2; }
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --cpu-quota) QUOTA=$2; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --perf) PERF_DIR=$2; shift 2 ;;
    --down) DOWN_ONLY=1; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) log "unknown argument $1"; exit 2 ;;
  esac
done

# One test cluster at a time on this machine (as tests/lib.sh).
exec 9>/tmp/ss-cluster.lock
flock 9

k_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ss-k-(switch|client|node[0-9]+)$' || true
}

# The CPU cgroup of a kernel-peer node's nginx, as cluster.sh's.
source "$ROOT/scripts/cgroup.sh"
# No quota on cgroup NAME (--cpu-quota off).
cg_unlimit() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo "max 100000" > "/sys/fs/cgroup/$1/cpu.max" 2>/dev/null || true
  else echo -1 > "/sys/fs/cgroup/cpu/$1/cpu.cfs_quota_us" 2>/dev/null || true; fi
}

kill_pid() {  # kill_pid FILE: the process in FILE, TERM then KILL
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

kernel_down() {
  local n pid d
  for f in "$KSTATE"/nginx*.pid; do [ -e "$f" ] && kill_pid "$f"; done
  for n in $(k_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  for i in $(seq 1 "$NODES"); do
    for d in $(cgroup_dirs "ss-k-node$i"); do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
  done
}

# Both sides down; the synshare side's nodes continued first (a stopped
# process takes no SIGINT).
down_all() {
  for f in "$STATE"/node*.pid; do [ -e "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null; done
  "$CLUSTER" down 2>/dev/null || true
  kernel_down
}

if [ "${DOWN_ONLY:-0}" = 1 ]; then down_all; log "down"; exit 0; fi
command -v ab >/dev/null || { log "ab missing (apache2-utils): run scripts/setup.sh"; exit 1; }
command -v nginx >/dev/null || { log "nginx missing: run scripts/setup.sh"; exit 1; }
trap down_all EXIT

plug() {  # plug NS IF TMPNAME: a veth from ss-k-switch's br0 into NS as IF
  ip link add "$3" type veth peer name "$3-br"
  ip link set "$3" netns "$1"
  ip link set "$3-br" netns ss-k-switch
  ns ss-k-switch ip link set "$3-br" master br0 up
  ns "$1" ip link set "$3" name "$2"
}

kernel_up() {
  kernel_down
  rm -rf "$KSTATE"; mkdir -p "$KSTATE"
  ip netns add ss-k-switch
  ns ss-k-switch ip link set lo up
  # Snooping off: the bridge floods the cluster MAC to every port.
  ns ss-k-switch ip link add br0 type bridge mcast_snooping 0
  ns ss-k-switch ip link set br0 up

  ip netns add ss-k-client
  plug ss-k-client eth0 ss-kc
  ns ss-k-client ip link set lo up
  ns ss-k-client ip link set eth0 address 02:00:00:00:00:10
  ns ss-k-client ip addr add 192.0.2.10/24 dev eth0
  ns ss-k-client ip link set eth0 up
  # As on the synshare side's client (whose frames af_packet reads as sent).
  ns ss-k-client ethtool -K eth0 tx off >/dev/null
  # The VIP at the cluster MAC (a router's static entry in practice).
  ns ss-k-client ip neigh replace "$VIP" lladdr "$KMAC" dev eth0 nud permanent

  local i n
  for i in $(seq 1 "$NODES"); do
    n=ss-k-node$i
    ip netns add "$n"
    plug "$n" eth0 "ss-kn$i"
    ns "$n" ip link set lo up
    ns "$n" ip link set eth0 address "$(printf '02:00:00:00:00:%02x' "$((0x20 + i))")"
    ns "$n" sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
    ns "$n" ip addr add "192.0.2.$((20 + i))/24" dev eth0
    ns "$n" ip addr add "$VIP/32" dev lo
    ns "$n" ip link set eth0 up
    ns "$n" ip maddr add "$KMAC" dev eth0
    ns "$n" nft -f - <<EOF
table netdev ss_k {
  counter mine {}
  counter others {}
  chain ingress {
    type filter hook ingress device "eth0" priority 0; policy accept;
    ether daddr $KMAC ip daddr $VIP tcp dport 80 jhash ip saddr . tcp sport mod $NODES seed $SEED != $((i - 1)) counter name "others" drop
    ether daddr $KMAC ip daddr $VIP tcp dport 80 counter name "mine" meta pkttype set host
  }
}
EOF
    cgroup_create "ss-k-node$i"
    [ "$QUOTA" = off ] && cg_unlimit "ss-k-node$i"
    local d="$KSTATE/nginx$i"
    mkdir -p "$d/tmp"
    "$CLUSTER" nginx-conf "node$i" "$d" "$KSTATE/nginx$i.pid" \
      "    listen 80 backlog=4096; listen [::]:80 ipv6only=on backlog=4096;"$'\n' > "$d/nginx.conf"
    # fd 9 (the lock) closed: nginx must not hold it.
    nsenter --net="/var/run/netns/$n" sh -c 'for d in $1; do echo $$ > "$d/cgroup.procs" 2>/dev/null; done; shift; exec "$@"' \
      sh "$(cgroup_dirs "ss-k-node$i")" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$KSTATE/nginx$i.log" 2>&1 9>&- &
    echo $! > "$KSTATE/nginx$i.pid"
  done
  for i in $(seq 1 "$NODES"); do
    for _ in $(seq 50); do ns "ss-k-node$i" ss -Hltn 'sport = :80' | grep -q . && break; sleep 0.1; done
  done
}

synshare_up() {
  local q=()
  SS_IDLE=$IDLE "$CLUSTER" up --nodes "$NODES" --service nginx >"$KSTATE/cluster-up.log" 2>&1 ||
    { cat "$KSTATE/cluster-up.log" >&2; return 1; }
  if [ "$QUOTA" = off ]; then
    for i in $(seq 1 "$NODES"); do cg_unlimit "ss-node$i"; done
  fi
}

# side_signal SIDE SIG: SIGSTOP/SIGCONT to the side's node processes
# (synshare: the nodes; kernel: nothing polls there).
side_signal() {
  [ "$1" = synshare ] || return 0
  for f in "$STATE"/node*.pid; do kill -"$2" "$(cat "$f")" 2>/dev/null || true; done
}

client_ns() { [ "$1" = synshare ] && echo ss-client || echo ss-k-client; }

# Every process of a side, "pid label" per line: nodes, nginx (master and
# worker), for the profile.
side_pids() {
  local i p
  if [ "$1" = synshare ]; then
    for i in $(seq 1 "$NODES"); do echo "$(cat "$STATE/node$i.pid") node"; done
    for i in $(seq 1 "$NODES"); do
      p=$(cat "$STATE/nginx$i.pid"); echo "$p nginx"
      for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do echo "$c nginx"; done
    done
  else
    for i in $(seq 1 "$NODES"); do
      p=$(cat "$KSTATE/nginx$i.pid"); echo "$p nginx"
      for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do echo "$c nginx"; done
    done
  fi
}

# cpu_snapshot SIDE: "label ticks" lines: per label (node threads by name,
# nginx), and the machine's user/system/softirq/idle from /proc/stat.
cpu_snapshot() {
  local pid label t
  side_pids "$1" | while read -r pid label; do
    for t in /proc/"$pid"/task/*; do
      [ -r "$t/stat" ] || continue
      local comm; comm=$(cat "$t/comm" 2>/dev/null)
      # utime + stime (fields 14 and 15, after the comm in parentheses)
      awk -v l="$label" -v c="$comm" '{ sub(/^.*\) /, ""); print (l == "node" ? "node:" c : l), $12 + $13 }' "$t/stat"
    done
  done
  awk '/^cpu / { print "all:user", $2 + $3; print "all:system", $4; print "all:irq+softirq", $7 + $8; print "all:idle", $5 + $6; print "all:steal", $9 }' /proc/stat
}

# profile_diff BEFORE AFTER SECONDS: CPU seconds per label and per wall second.
profile_diff() {
  local hz; hz=$(getconf CLK_TCK)
  awk -v hz="$hz" -v s="$3" 'NR == FNR { a[$1] += $2; next } { b[$1] += $2 }
    END { for (k in b) { d = (b[k] - a[k]) / hz; if (d > 0) printf "    %-24s %7.2f s  %5.2f cores\n", k, d, d / s } }' "$1" "$2" | sort
}

# run SIDE ROUND: one ab run; prints requests per second (or nan).
run() {
  local side=$1 r=$2 out="$KSTATE/ab-$1-$2.txt" t0 t1 rps
  side_signal "$side" CONT
  sleep 0.5
  [ "$side" = synshare ] && for i in $(seq 1 "$NODES"); do "$BIN" status --socket "/run/synshare/ss-node$i.sock" --json > "$KSTATE/status0-$i.json" 2>/dev/null; done
  local perf_pid=""
  if [ -n "$PERF_DIR" ]; then
    perf record -a -g -F 499 -o "$PERF_DIR/perf-$side-$r.data" >/dev/null 2>&1 9>&- &
    perf_pid=$!
    sleep 0.5
  fi
  # The CPU snapshots tightly around ab (the status queries and perf's
  # start and stop outside).
  [ "$PROFILE" = 1 ] && cpu_snapshot "$side" > "$KSTATE/cpu0"
  t0=$(date +%s.%N)
  ns "$(client_ns "$side")" ab -q -n "$REQUESTS" -c "$CONC" -s 10 "http://$VIP/" > "$out" 2>&1
  t1=$(date +%s.%N)
  [ "$PROFILE" = 1 ] && cpu_snapshot "$side" > "$KSTATE/cpu1"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null; fi
  [ "$side" = synshare ] && for i in $(seq 1 "$NODES"); do "$BIN" status --socket "/run/synshare/ss-node$i.sock" --json > "$KSTATE/status1-$i.json" 2>/dev/null; done
  if [ "$PROFILE" = 1 ]; then
    profile_diff "$KSTATE/cpu0" "$KSTATE/cpu1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" > "$KSTATE/profile-$side-$r.txt"
  fi
  side_signal "$side" STOP
  rps=$(awk '/^Requests per second:/ { print $4 }' "$out")
  local failed; failed=$(awk '/^Failed requests:/ { print $3 }' "$out")
  echo "${rps:-nan} ${failed:-?}"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "bringing up the kernel-only peer (ss-k-*) and the synshare cluster (ss-*), $NODES nodes, nginx"
down_all
mkdir -p "$KSTATE"
kernel_up || exit 1
synshare_up || exit 1
# Both answer, every node of each (a few requests, also a warm-up).
for side in synshare kernel; do
  seen=$(for _ in $(seq 30); do ns "$(client_ns "$side")" curl -s -m 2 "http://$VIP/" | head -1; done | sort -u | tr '\n' ' ')
  log "$side: answered by: $seen"
  ns "$(client_ns "$side")" ab -q -n 300 -c "$CONC" "http://$VIP/" >/dev/null 2>&1
done
side_signal synshare STOP

results="$KSTATE/e2e.tsv"
echo -e "round\tside\trequests_per_s\tfailed\tloadavg" > "$results"
echo "e2e: ab -n $REQUESTS -c $CONC http://$VIP/, $ROUNDS rounds, synshare and kernel alternating${IDLE:+, idle $IDLE}, cpu quota $QUOTA"
echo "e2e: load average before: $load_before"
for r in $(seq "$ROUNDS"); do
  for side in synshare kernel; do
    read -r rps failed <<<"$(run "$side" "$r")"
    printf "%s\t%s\t%s\t%s\t%s\n" "$r" "$side" "$rps" "$failed" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results"
    if [ "$PROFILE" = 1 ]; then cat "$KSTATE/profile-$side-$r.txt"; fi
    if [ "$side" = synshare ]; then
      python3 - "$KSTATE" "$NODES" <<'EOF'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
tot = {}
for i in range(1, n + 1):
    try:
        a = json.load(open(f"{d}/status0-{i}.json")); b = json.load(open(f"{d}/status1-{i}.json"))
    except Exception:
        continue
    def flat(x, p=""):
        out = {}
        if isinstance(x, dict):
            for k, v in x.items(): out.update(flat(v, f"{p}{k}."))
        elif isinstance(x, list):
            for k, v in enumerate(x): out.update(flat(v, f"{p}{k}."))
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out[p[:-1]] = x
        return out
    fa, fb = flat(a), flat(b)
    for k in fb:
        if k in fa and ("counters" in k or "packets" in k) and fb[k] != fa[k]:
            key = k.split(".", 1)[1] if k.startswith("workers.") else k
            tot[key] = tot.get(key, 0) + fb[k] - fa[k]
with open(f"{d}/counters.txt", "a") as f:
    for k in sorted(tot):
        f.write(f"{k} {tot[k]}\n")
    f.write("--\n")
EOF
    fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
ms=$(awk '$2 == "synshare" { print $3 }' "$results" | median)
mk=$(awk '$2 == "kernel" { print $3 }' "$results" | median)
echo "e2e: load average after: $load_after"
echo "e2e: median requests/s: synshare $ms, kernel $mk, ratio $(awk -v a="$ms" -v b="$mk" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')"
for i in $(seq 1 "$NODES"); do
  printf "e2e: ss-k-node%s nft counters: %s\n" "$i" "$(ns "ss-k-node$i" nft list counters 2>/dev/null | awk '/counter/ { name = $2 } /packets/ { printf "%s %s packets; ", name, $2 }')"
done
echo "e2e: per-round figures in $results; ab outputs and the nodes' counters per synshare round (counters.txt) in $KSTATE"
