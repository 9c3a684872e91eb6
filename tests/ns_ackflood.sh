#!/usr/bin/env bash
# A flood of 150,000 spoofed bare ACKs to the VIP (from 64 spoofed client
# addresses, random ports, every other one with a wrong TCP checksum), in a
# 3-node cluster whose buckets are settled (they adopt unknown segments):
# each is adopted only provisionally, so 5 s later every node's flow-table
# occupancy is within 1 point of what it was; a stream of new connections
# during and after it has no failure.
source "$(dirname "$0")/lib.sh"
export SS_DRAIN_MS=3000
flows_of() { node_json "$1" | python3 -c 'import json,sys; print(sum(w["flows"] for w in json.load(sys.stdin)["workers"]))'; }
occupancy() { for i in 1 2 3; do flows_of "$i"; done | paste -sd' '; }
adopted() { local s=0 i; for i in 1 2 3; do s=$(( s + $(counter "$i" kernel_vip_adopted) + $(counter "$i" kernel_vip_adopted_untracked) )); done; echo $s; }

echo "== $TEST_NAME"
cc -O2 -o "$SS_TMP/ackflood" "$ROOT/tests/tools/ackflood.c" || { fail "the flood sender builds"; finish; exit 1; }
"$CLUSTER" up --nodes 3 --mode peer --cpu off || { fail "cluster up"; finish; exit 1; }
pass "3 nodes converged"
sleep 4   # the buckets settle (drain period 3 s): unknown ACKs are adopted
cap=$(node_json 1 | python3 -c 'import json,sys; print(json.load(sys.stdin).get("flow_capacity", 65536))')
stream --seconds 16 --parallel 2 --pause 0.05 --timeout 10 --out "$SS_TMP/stream.jsonl" &
sp=$!
# The stream's own connections occupy the tables too: the baseline is taken
# under the same stream.
sleep 3
before=$(occupancy)
p0=$(adopted)
read -r sent secs <<<"$(client "$SS_TMP/ackflood" 192.0.2.100 80 150000 192.0.2.128 64)"
echo "    sent $sent spoofed ACKs in $secs s"
p1=$(adopted)
during=$(occupancy)
sleep 5
after=$(occupancy)
wait "$sp"
read -r bad total <<<"$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(x["status"] != "ok" for x in r), len(r))' "$SS_TMP/stream.jsonl")"
echo "    flows per node under the stream before: $before; right after the flood: $during; 5 s later: $after (of $cap each); adopted provisionally: $((p1 - p0))"
check "the flood was adopted, provisionally ($((p1 - p0)) > 10000)" test $((p1 - p0)) -gt 10000
python3 - "$before" "$after" "$cap" <<'PY'
import sys
b, a, cap = [int(x) for x in sys.argv[1].split()], [int(x) for x in sys.argv[2].split()], int(sys.argv[3])
sys.exit(0 if all(abs(x - y) * 100 <= cap for x, y in zip(a, b)) else 1)
PY
check "every node's flow-table occupancy 5 s later within 1 point of before ($before -> $after of $cap)" test $? -eq 0
check "no new connection failed during or after the flood ($bad of $total)" test "$bad" -eq 0 -a "$total" -gt 100
finish
