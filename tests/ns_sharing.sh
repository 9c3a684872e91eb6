#!/usr/bin/env bash
# Three nodes with weights 1, 2, 3 share the VIP: every new connection is
# served by exactly one node, in proportion to the weights, with no reset;
# wrk sees no socket error; a long download survives thousands of other
# connections; every VIP packet a node saw is accounted for.
source "$(dirname "$0")/lib.sh"

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 3 --weights 1,2,3 || { fail "cluster up"; finish; exit 1; }

resets0=$(( $(tcp_stat EstabResets) + $(tcp_stat AttemptFails) ))
opens0=$(tcp_stat ActiveOpens)

# A long download running through everything below.
client curl -s -m90 -o "$SS_TMP/slow.out" -w "%{http_code}" "http://192.0.2.100/slow?s=60" > "$SS_TMP/slow.code" 2>&1 &
slow_pid=$!
sleep 1

client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 3000 --parallel 16 > "$SS_TMP/v4.json"
client python3 "$ROOT/tests/client.py" --host 2001:db8::100 --count 1000 --parallel 16 > "$SS_TMP/v6.json"
cat "$SS_TMP/v4.json" "$SS_TMP/v6.json" | sed 's/^/    /'

summary=$(python3 - "$SS_TMP/v4.json" "$SS_TMP/v6.json" <<'PY'
import json, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
count = sum(r["count"] for r in runs)
ok = sum(r["ok"] for r in runs)
nodes = {}
for r in runs:
    for k, v in r["nodes"].items():
        nodes[k] = nodes.get(k, 0) + v
shares = [100.0 * nodes.get(f"node{i}", 0) / max(ok, 1) for i in (1, 2, 3)]
target = [100 / 6, 200 / 6, 300 / 6]
worst = max(abs(s - t) for s, t in zip(shares, target))
print(count, ok, " ".join(f"{s:.1f}" for s in shares), f"{worst:.2f}")
PY
)
read -r count ok s1 s2 s3 worst <<<"$summary"
check "all $count connections answered with HTTP 200 ($ok)" test "$ok" -eq "$count"
check "shares node1 $s1% node2 $s2% node3 $s3% within 3 points of 16.7/33.3/50.0 (worst $worst)" \
  python3 -c "import sys; sys.exit(0 if $worst <= 3.0 else 1)"

resets1=$(( $(tcp_stat EstabResets) + $(tcp_stat AttemptFails) ))
opens1=$(tcp_stat ActiveOpens)
check "no reset seen by the client's kernel ($((resets1 - resets0)) resets or failed attempts)" test $((resets1 - resets0)) -eq 0

# Exactly one node accepted each SYN: the accepted SYNs add up to the SYNs
# sent, and each node dropped the others'.
sleep 0.5
syns=0; refused=0
for i in 1 2 3; do
  a=$(counter $i kernel_vip_syn); r=$(counter $i drop_syn_not_owner)
  echo "    node$i: accepted $a SYNs, refused $r"
  syns=$((syns + a)); refused=$((refused + r))
done
opened=$((opens1 - opens0))
check "each SYN accepted by exactly one node ($syns accepted for $opened connections opened)" near "$syns" "$opened" 20
check "and refused by the two others ($refused refused, 2 x $syns expected)" near "$refused" $((2 * syns)) 40

wrk_out=$(client wrk -t2 -c8 -d20s --timeout 5s http://192.0.2.100/ 2>&1)
echo "$wrk_out" | sed 's/^/    /'
check "wrk for 20 s: no socket errors" bash -c "! grep -q 'Socket errors' <<<\"\$0\"" "$wrk_out"
check "wrk for 20 s: no non-2xx answers" bash -c "! grep -q 'Non-2xx' <<<\"\$0\"" "$wrk_out"
reqs=$(echo "$wrk_out" | awk '/requests in/ { print $1 }')
check "wrk completed requests ($reqs)" test "${reqs:-0}" -gt 100

wait "$slow_pid"
size=$(stat -c %s "$SS_TMP/slow.out" 2>/dev/null || echo 0)
check "GET /slow survived 4000 connections and wrk (HTTP $(cat "$SS_TMP/slow.code"), $size of 614400 bytes)" \
  test "$size" -eq 614400 -a "$(cat "$SS_TMP/slow.code")" = 200

sleep 0.3
for i in 1 2 3; do
  read -r outcomes worker_rx port_rx <<<"$(frame_accounting $i)"
  check "node$i accounts for every frame it saw ($outcomes outcomes, $worker_rx received, port $port_rx)" \
    test "$outcomes" -eq "$worker_rx" -a "$worker_rx" -eq "$port_rx"
done
"$CLUSTER" status | sed 's/^/    /'

finish
