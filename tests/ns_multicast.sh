#!/usr/bin/env bash
# The switch side in multicast mode: the cluster MAC is the MAC of the
# cluster group 239.255.2.100 (from the VIP), the test switch snoops IGMP and
# MLD and queries every 5 s, and a spectator host sits on it. The switch's
# own table must list the group on every node's port and on no other; the
# cluster serves 3,000 IPv4 and 1,000 IPv6 connections exactly once; a
# drained or stopped node's port leaves the group and joins again; a kill -9
# fails over; entries outlive the membership interval (queries answered).
source "$(dirname "$0")/lib.sh"
X="python3 $ROOT/tests/exchange.py"
G4=239.255.2.100
G6=ff05::efff:264
mdb() { ip netns exec ss-switch bridge mdb show 2>/dev/null; }
# in_group PORT GROUP: the switch lists GROUP on PORT.
in_group() { mdb | grep -q "port $1 grp $2 "; }
wait_group() {  # wait_group PORT GROUP yes|no SECONDS
  local end=$((SECONDS + $4))
  while [ $SECONDS -le $end ]; do
    if in_group "$1" "$2"; then [ "$3" = yes ] && return 0; else [ "$3" = no ] && return 0; fi
    sleep 0.2
  done
  return 1
}

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 3 --mode peer --weights 1,2,3 --cpu off --mac multicast || { fail "cluster up"; finish; exit 1; }
pass "3 nodes converged with the multicast cluster MAC $(cat /tmp/ss-cluster/cluster_mac)"
for i in 1 2 3; do wait_group "ss-n$i-br" "$G4" yes 10; done
t_joined=$SECONDS
mdb | sed 's/^/    /'
for i in 1 2 3; do
  check "the switch lists $G4 and $G6 on node$i's port" bash -c "$(declare -f mdb in_group); in_group ss-n$i-br $G4 && in_group ss-n$i-br $G6"
done
check "and not on the client's or the spectator's port" bash -c "! ip netns exec ss-switch bridge mdb show | grep -E 'port (ss-c-br|ss-sp-br) grp ($G4|$G6) '"

# Exactly once, shares 1:2:3.
o0=$(tcp_stat ActiveOpens)
s0=0; for i in 1 2 3; do s0=$((s0 + $(counter $i kernel_vip_syn))); done
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 3000 --parallel 16 > "$SS_TMP/v4.json"
client python3 "$ROOT/tests/client.py" --host 2001:db8::100 --count 1000 --parallel 16 > "$SS_TMP/v6.json"
read -r count ok s1 s2 s3 worst <<<"$(python3 - "$SS_TMP/v4.json" "$SS_TMP/v6.json" <<'PY'
import json, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
count = sum(r["count"] for r in runs); ok = sum(r["ok"] for r in runs)
nodes = {}
for r in runs:
    for k, v in r["nodes"].items():
        nodes[k] = nodes.get(k, 0) + v
shares = [100.0 * nodes.get(f"node{i}", 0) / max(ok, 1) for i in (1, 2, 3)]
worst = max(abs(s - t) for s, t in zip(shares, [100 / 6, 200 / 6, 300 / 6]))
print(count, ok, " ".join(f"{s:.1f}" for s in shares), f"{worst:.2f}")
PY
)"
sleep 0.5
s1n=0; for i in 1 2 3; do s1n=$((s1n + $(counter $i kernel_vip_syn))); done
opened=$(( $(tcp_stat ActiveOpens) - o0 ))
check "all $count connections (3,000 IPv4, 1,000 IPv6) answered ($ok)" test "$ok" -eq "$count" -a "$count" -eq 4000
check "shares $s1/$s2/$s3% within 3 points of 16.7/33.3/50.0 (worst $worst)" python3 -c "import sys; sys.exit(0 if $worst <= 3.0 else 1)"
check "each SYN accepted once ($((s1n - s0)) accepted for $opened opened)" near $((s1n - s0)) "$opened" 3

# Drain: the port leaves; undrain: it joins again.
"$BIN" drain --socket /run/synshare/ss-node3.sock >/dev/null
check "a drained node's port leaves the group" wait_group ss-n3-br "$G4" no 20
"$BIN" undrain --socket /run/synshare/ss-node3.sock >/dev/null
check "undrained, it joins again" wait_group ss-n3-br "$G4" yes 10

# Stop: the port leaves; start: it joins again.
kill -INT "$(cat /tmp/ss-cluster/node2.pid)"
check "a stopped node's port leaves the group" wait_group ss-n2-br "$G4" no 20
"$CLUSTER" start-node 2 >/dev/null 2>&1
check "restarted, it joins again" wait_group ss-n2-br "$G4" yes 10
"$CLUSTER" wait-converged >/dev/null 2>&1

# Queries answered: entries outlive the 12 s membership interval.
sleep $(( t_joined + 16 - SECONDS > 0 ? t_joined + 16 - SECONDS : 0 ))
check "node1's entry outlives the membership interval (queries answered)" in_group ss-n1-br "$G4"

# kill -9 fails over as in unicast mode.
kill_at=$(date +%s.%N)
"$CLUSTER" kill-node 3
failover=$($X failover 3 3 5 "$kill_at")
check "kill -9: the others serve every bucket within 1 s ($failover ms)" test "$failover" -ge 0 -a "$failover" -lt 1000
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 300 --parallel 8 --timeout 10 > "$SS_TMP/after.json"
ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$SS_TMP/after.json")
check "and the two left answer every new connection ($ok of 300)" test "$ok" -eq 300
finish
