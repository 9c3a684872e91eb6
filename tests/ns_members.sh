#!/usr/bin/env bash
# Membership at run time, under a stream of new connections and long
# downloads: node4, started with `join` (the key and one member's address,
# no peers), is added with `synshare members add` and gets its share; then
# node1 is removed with `synshare members remove`: its buckets move to the
# others, it leaves the directory once its downloads ended, and it holds
# nothing. No connection fails or is reset, no download breaks, and the
# client's capture sees no SYN answered by two servers.
source "$(dirname "$0")/lib.sh"
X="python3 $ROOT/tests/exchange.py"
now() { date +%s.%N; }
ms_since() { python3 -c "import time; print(int((time.time() - $1) * 1000))"; }
snmp_resets() { client awk '/^Tcp:/ { if (!h) { split($0, k); h = 1 } else { for (i = 1; i <= NF; i++) v[k[i]] = $i } } END { print v["EstabResets"] + v["AttemptFails"] }' /proc/net/snmp; }
sock() { echo "/run/synshare/ss-node$1.sock"; }
held() { node_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["held"])'; }
# role I ID: member ID's role in node I's directory ("absent" if not there).
role() {
  "$BIN" members --socket "$(sock "$1")" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(next((m["role"] for m in r["members"] if m["id"] == int(sys.argv[1])), "absent"))' "$2"
}
# wait_for SECONDS COMMAND...: until the command succeeds; prints the ms it took (-1: never).
wait_for() {
  local secs=$1 t0; shift; t0=$(now)
  for _ in $(seq "$((secs * 10))"); do
    if "$@" >/dev/null 2>&1; then ms_since "$t0"; return 0; fi
    sleep 0.1
  done
  echo -1; return 1
}
# held_by "I J K" TOTAL: the nodes hold TOTAL buckets between them, at one epoch.
held_by() {
  local sum=0 h epochs=""
  for i in $1; do
    h=$(held "$i") || return 1
    sum=$((sum + h))
    epochs+="$(node_json "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])') "
  done
  [ "$sum" -eq "$2" ] && [ "$(echo "$epochs" | tr ' ' '\n' | sort -u | grep -c .)" -eq 1 ]
}
share_at_least() { [ "$(held "$1")" -ge "$2" ]; }

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 3 --mode peer || { fail "cluster up"; finish; exit 1; }
pass "3 nodes converged: held $($X held 3)"
check "the directory lists the three nodes as voters" bash -c '[ "$("$1" members --socket "$2" --json | python3 -c "import json,sys; print(\",\".join(str(m[\"id\"]) + m[\"role\"] for m in json.load(sys.stdin)[\"members\"]))")" = 1voter,2voter,3voter ]' _ "$BIN" "$(sock 1)"

resets0=$(snmp_resets)
for k in $(seq 6); do
  client curl -s -m60 -D "$SS_TMP/slow$k.h" -o "$SS_TMP/slow$k.out" "http://192.0.2.100/slow?s=20" &
  echo $! > "$SS_TMP/slow$k.pid"
done
capture_synacks "$SS_TMP/synacks.json"
stream --seconds 45 --parallel 3 --out "$SS_TMP/members.jsonl" &
stream_pid=$!
sleep 2

# --- add node4 ---------------------------------------------------------------
# A node nobody added first: it starts, knows the key, and gets nothing.
"$CLUSTER" add-node 4 192.0.2.22:7946 || fail "node4 started"
sleep 2
check "node4, not yet added, holds nothing ($(held 4))" test "$(held 4)" -eq 0
check "and is in nobody's directory" test "$(role 2 4)" = absent
# Asked at node2, whoever leads.
out=$("$BIN" members add 4 192.0.2.24:7946 --socket "$(sock 2)" 2>&1); rc=$?
echo "$out" | sed 's/^/    /' | head -8
check "synshare members add 4 at node2 (exit $rc)" test "$rc" -eq 0
t=$(wait_for 15 share_at_least 4 9800)
check "node4 gets its share within 15 s ($t ms, held $(held 4) of 65536)" test "$t" -ge 0
t=$(wait_for 10 bash -c "[ \"\$(\"$BIN\" members --socket $(sock 3) --json | python3 -c 'import json,sys; print(next(m[\"role\"] for m in json.load(sys.stdin)[\"members\"] if m[\"id\"] == 4))')\" = voter ]")
check "node4 is promoted to voter ($t ms)" test "$t" -ge 0
t=$(wait_for 10 held_by "1 2 3 4" 65536)
check "the four nodes hold every bucket once, at one epoch ($t ms)" test "$t" -ge 0
check "node4 learned the directory: it lists node1 ($(role 4 1))" test "$(role 4 1)" = voter
sleep 3

# --- remove node1 ------------------------------------------------------------
out=$("$BIN" members remove 1 --socket "$(sock 3)" 2>&1); rc=$?
echo "$out" | sed 's/^/    /' | head -8
check "synshare members remove 1 at node3 (exit $rc)" test "$rc" -eq 0
t=$(wait_for 10 bash -c "[ \"\$(\"$BIN\" status --socket $(sock 1) --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"held\"])')\" = 0 ]")
check "node1 hands its buckets off ($t ms)" test "$t" -ge 0
t=$(wait_for 10 held_by "2 3 4" 65536)
check "the three others hold every bucket once ($t ms)" test "$t" -ge 0
# It leaves the directory once its downloads (20 s) ended.
t=$(wait_for 40 bash -c "for i in 2 3 4; do [ \"\$(\"$BIN\" members --socket /run/synshare/ss-node\$i.sock --json | python3 -c 'import json,sys; print(any(m[\"id\"] == 1 for m in json.load(sys.stdin)[\"members\"]))')\" = False ] || exit 1; done")
check "node1 leaves every directory once it serves nothing ($t ms)" test "$t" -ge 0
check "node1 runs on and holds nothing ($(held 1))" test "$(held 1)" -eq 0
check "node4's workers take the exchange port from nodes 2 and 3 (kernel_exchange $(counter 4 kernel_exchange))" \
  test "$(counter 4 kernel_exchange)" -gt 0

wait "$stream_pid"
stop_capture
twice=$(answered_twice "$SS_TMP/synacks.json" 1000)
echo "    client capture: $(cat "$SS_TMP/synacks.json")"
check "no client SYN answered by two servers across the add and the remove (client capture: $twice)" test "$twice" -eq 0
for k in $(seq 6); do wait "$(cat "$SS_TMP/slow$k.pid")" 2>/dev/null || true; done
complete=0; nodes=""
for k in $(seq 6); do
  [ "$(stat -c %s "$SS_TMP/slow$k.out" 2>/dev/null || echo 0)" -eq 204800 ] && complete=$((complete + 1))
  nodes+="$(awk -F': ' 'tolower($1) == "x-node" { gsub("\r", "", $2); print $2 }' "$SS_TMP/slow$k.h") "
done
summary=$($X stream-summary "$SS_TMP/members.jsonl" 0)
read -r shares n <<<"$($X shares "$SS_TMP/members.jsonl")"
resets=$(( $(snmp_resets) - resets0 ))
echo "    downloads from: $nodes; stream: $shares of $n; $summary; resets $resets"
check "no download broken ($complete of 6 complete)" test "$complete" -eq 6
failed=$(python3 -c "import json; print(json.loads('$summary')['failed'])")
check "no new connection failed ($failed of $n)" test "$failed" -eq 0
check "no reset seen by the client ($resets)" test "$resets" -eq 0
share4=$(python3 -c "import json; print(json.loads('$shares').get('node4', 0))")
check "node4 served new connections ($share4%)" python3 -c "import sys; sys.exit(0 if $share4 > 5 else 1)"
"$CLUSTER" stop-node 1
finish
