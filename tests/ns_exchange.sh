#!/usr/bin/env bash
# Shares that follow capacity, in peer mode (SS_MODE=coordinator for
# coordinator mode): a loaded node's share falls and comes back; kill -9 of
# a node under a stream of new connections; 20 weight changes under load
# with ten long downloads; forged, garbage and replayed heartbeats.
source "$(dirname "$0")/lib.sh"
MODE=${SS_MODE:-peer}
TEST_NAME=${SS_TEST_NAME:-$TEST_NAME}
X="python3 $ROOT/tests/exchange.py"
# weight_ms I CMP LIMIT T0: polls node I's advertised weight every 50 ms
# (up to 100 looks) until it is CMP LIMIT (CMP a Python comparison);
# prints the ms since T0 (a `now`) then, or -1.
weight_ms() {
  local w
  for _ in $(seq 100); do
    w=$($X weight "$1")
    if python3 -c "import sys; sys.exit(0 if $w $2 $3 else 1)"; then ms_since "$4"; return; fi
    sleep 0.05
  done
  echo -1
}
snmp_resets() { client awk '/^Tcp:/ { if (!h) { split($0, k); h = 1 } else { for (i = 1; i <= NF; i++) v[k[i]] = $i } } END { print v["EstabResets"] + v["AttemptFails"] }' /proc/net/snmp; }

echo "== $TEST_NAME"
cluster_up 3 "$MODE" "3 nodes in $MODE mode"
if [ "$MODE" = coordinator ]; then
  creator=$(node_json 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchange"]["epoch_creator"])')
  check "the coordinator (member 0) made the table (creator $creator)" test "$creator" = 0
  check "the coordinator's metrics show the three nodes up and its table" bash -c '
    m=$(ip netns exec ss-coord curl -s -m5 http://127.0.0.1:9746/metrics)
    [ "$(grep -cE "^synshare_peer_up\{.*\} 1(\.0)?$" <<<"$m")" -ge 3 ] && grep -q "^synshare_member_share_ratio{" <<<"$m" && grep -q "role=\"coordinator\"" <<<"$m"'
  check "synshare status on the coordinator shows the three nodes" \
    bash -c '"$1" status --socket /run/synshare/ss-coord.sock | grep -c "^    peer" | grep -qx 3' _ "$BIN"
fi

# --- a loaded node takes fewer new connections, then more again ---------
stream --seconds 3 --parallel 4 --out "$SS_TMP/base.jsonl"
read -r base n <<<"$($X shares "$SS_TMP/base.jsonl")"
echo "    before load: $base of $n connections"
t0=$(now)
"$CLUSTER" burn 2
dropped=$(weight_ms 2 '<' 0.3 "$t0")
echo "    node2's advertised weight fell below 0.3 after $dropped ms (samples every 250 ms)"
check "a CPU-loaded node advertises less availability ($dropped ms)" test "$dropped" -ge 0
sleep 1
stream --seconds 4 --parallel 4 --out "$SS_TMP/loaded.jsonl" &
stream_pid=$!
# The share node2's advertised weight gives it, sampled during the stream.
expect2=$(for _ in $(seq 6); do
  for i in 1 2 3; do $X weight $i; done | paste -sd' '
  sleep 0.5
done | python3 -c '
import sys
shares = [100 * float(l.split()[1]) / sum(map(float, l.split())) for l in sys.stdin if l.strip()]
print(round(sum(shares) / len(shares), 1))')
wait "$stream_pid"
read -r loaded n <<<"$($X shares "$SS_TMP/loaded.jsonl")"
echo "    loaded: $loaded of $n connections; node2's weights gave it $expect2% on average"
share2=$(python3 -c "import json; print(json.loads('$loaded').get('node2', 0))")
# Well below the equal third it had; how far is the next check's to say
# (the share follows the advertised weight, sampled every 250 ms, so it
# lags it by a few points: 13.9% against 10.4% once, under a 12% bound).
check "node2's share of new connections fell ($share2% < 20%)" python3 -c "import sys; sys.exit(0 if $share2 < 20 else 1)"
check "in line with its availability ($share2% vs $expect2% from its advertised weight)" python3 -c "import sys; sys.exit(0 if abs($share2 - $expect2) < 5 else 1)"
"$CLUSTER" unburn 2
t1=$(now)
rose=$(weight_ms 2 '>' 0.8 "$t1")
echo "    node2's weight back above 0.8 after $rose ms"
sleep 0.5
stream --seconds 3 --parallel 4 --out "$SS_TMP/after.jsonl"
read -r after n <<<"$($X shares "$SS_TMP/after.jsonl")"
share2=$(python3 -c "import json; print(json.loads('$after').get('node2', 0))")
echo "    after the load: $after of $n connections"
check "node2's share came back ($share2% > 22%)" python3 -c "import sys; sys.exit(0 if $share2 > 22 else 1)"

# --- kill -9 under a stream of new connections ------------------------------
for k in $(seq 6); do
  client curl -s -m30 -D "$SS_TMP/slow$k.h" -o "$SS_TMP/slow$k.out" "http://192.0.2.100/slow?s=12" &
  echo $! > "$SS_TMP/slow$k.pid"
done
kill_under_stream 3 3 2 "$SS_TMP/kill.jsonl" --seconds 9 --parallel 4
wait "$STREAM_PID"
summary=$($X stream-summary "$SS_TMP/kill.jsonl" "$KILL_AT")
echo "    kill -9 node3: the others held every bucket after $FAILOVER ms; clients: $summary"
check "failover: the survivors hold all buckets within 1 s ($FAILOVER ms)" test "$FAILOVER" -ge 0 -a "$FAILOVER" -lt 1000
# A connection that started within 50 ms of the kill may have been taken by
# node3 before it (see failed_later), as ns_faults (f) counts too.
failed=$(python3 -c "import json; print(json.loads('$summary')['failed'])")
late_failed=$(failed_later "$summary")
check "no new connection failed but those node3 was serving ($late_failed of $failed started later than 50 ms after the kill)" test "$late_failed" -eq 0
last_slow=$(python3 -c "import json; v = json.loads('$summary')['last_slow_start_after_kill_ms']; print(-1 if v is None else v)")
# From 1 s after the kill, a SYN is dropped only as rarely as in any
# hand-off (the weights keep moving with the load): one message delay per
# moving bucket.
late=$(python3 -c "import json; print(json.loads('$summary')['syn_retransmitted_1s_after_kill'])")
total=$(python3 -c "import json; print(json.loads('$summary')['connections'])")
check "connections started 1 s after the kill were served at once ($late of $total needed a SYN retransmission, last delayed one started at $last_slow ms)" \
  python3 -c "import sys; sys.exit(0 if $late <= max(2, $total // 200) else 1)"
for k in $(seq 6); do wait "$(cat "$SS_TMP/slow$k.pid")" 2>/dev/null || true; done
ok_others=0; others=0
for k in $(seq 6); do
  node=$(awk -F': ' 'tolower($1) == "x-node" { gsub("\r", "", $2); print $2 }' "$SS_TMP/slow$k.h")
  size=$(stat -c %s "$SS_TMP/slow$k.out" 2>/dev/null || echo 0)
  if [ "$node" != node3 ]; then others=$((others + 1)); [ "$size" -eq 122880 ] && ok_others=$((ok_others + 1)); fi
done
check "downloads from the other nodes untouched ($ok_others of $others complete)" test "$ok_others" -eq "$others" -a "$others" -gt 0
"$CLUSTER" start-node 3 >/dev/null 2>&1
"$CLUSTER" wait-converged
check "the restarted node rejoins (held $($X held 3))" $X wait-held 3 3 10000 10
stream --seconds 3 --parallel 4 --out "$SS_TMP/rejoin.jsonl"
read -r rejoin n <<<"$($X shares "$SS_TMP/rejoin.jsonl")"
share3=$(python3 -c "import json; print(json.loads('$rejoin').get('node3', 0))")
check "and serves new connections again ($rejoin)" python3 -c "import sys; sys.exit(0 if $share3 > 15 else 1)"

# --- 20 weight changes in 30 s under load, ten long downloads ---------------
resets0=$(snmp_resets)
for k in $(seq 10); do
  client curl -s -m60 -o "$SS_TMP/long$k.out" "http://192.0.2.100/slow?s=33" &
  echo $! > "$SS_TMP/long$k.pid"
done
stream --seconds 31 --parallel 3 --out "$SS_TMP/churn.jsonl" &
stream_pid=$!
changes=0
for c in $(seq 20); do
  node=$((RANDOM % 3 + 1))
  weight=$(python3 -c "import random; print(round(random.uniform(0.3, 3.0), 2))")
  "$BIN" capacity "$weight" --socket "/run/synshare/ss-node$node.sock" >/dev/null && changes=$((changes + 1))
  sleep 1.5
done
epoch=$(node_json 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
wait "$stream_pid"
for k in $(seq 10); do wait "$(cat "$SS_TMP/long$k.pid")" 2>/dev/null || true; done
complete=0
for k in $(seq 10); do [ "$(stat -c %s "$SS_TMP/long$k.out" 2>/dev/null || echo 0)" -eq 337920 ] && complete=$((complete + 1)); done
summary=$($X stream-summary "$SS_TMP/churn.jsonl" 0)
resets=$(( $(snmp_resets) - resets0 ))
echo "    $changes capacity changes (table epoch now $epoch); clients: $summary; resets $resets"
check "20 weight changes applied ($changes)" test "$changes" -eq 20
check "no long download broken ($complete of 10 complete)" test "$complete" -eq 10
failed=$(python3 -c "import json; print(json.loads('$summary')['failed'])")
check "no new connection failed during the changes ($failed)" test "$failed" -eq 0
check "no reset seen by the client ($resets)" test "$resets" -eq 0

# --- forged, garbage and replayed heartbeats change nothing -----------------
# The forged ones claim epoch 1000000 giving member 2 every bucket, and a
# member 9 on another segment: neither may show up anywhere.
sent=$(client python3 "$ROOT/tests/exchange.py" forge synshare-test-cluster-key 192.0.2.21 7946 192.0.2.22)
replayed=$(ip netns exec ss-node1 python3 "$ROOT/tests/exchange.py" replay ss-tap 192.0.2.21 7946)
sleep 0.5
read -r epoch members peers bad_tag garbage replay foreign unknown <<<"$(node_json 1 | python3 -c '
import json, sys
s = json.load(sys.stdin)
x = s["exchange"]
st = x["stats"]
print(x["epoch"], ",".join(str(m["id"]) for m in x["members"]), ",".join(str(p["id"]) for p in x["peers"] if p["live"]),
      st["rejected_bad_tag"], st["rejected_bad_length"] + st["rejected_not_heartbeat"] + st["rejected_malformed"] + st["rejected_unknown_key"],
      st["rejected_replayed"], st["rejected_foreign"], st["rejected_unknown_source"])')"
echo "    sent $sent forged/garbage datagrams and replayed $replayed real ones: rejected bad_tag $bad_tag, garbage $garbage, replayed $replay, foreign $foreign, unknown source $unknown"
check "nothing forged was taken (table $epoch, members $members, live peers $peers)" \
  test "$members" = 1,2,3 -a "$peers" = "$( [ "$MODE" = coordinator ] && echo 0,2,3 || echo 2,3)"
dropped=$(counter 1 drop_exchange_not_member)
check "datagrams from an address that is no member dropped in the dataplane ($dropped >= 10)" test "$dropped" -ge 10
check "wrong-key heartbeats counted ($bad_tag >= 20)" test "$bad_tag" -ge 20
# A garbage datagram whose random key-id byte happens to be 0 reaches the
# tag check and is counted there: judge the 60 together.
check "garbage counted ($garbage + $bad_tag >= 60)" test $((garbage + bad_tag)) -ge 60
check "replays counted ($replay >= 5)" test "$replay" -ge 5
check "foreign segment counted ($foreign >= 1)" test "$foreign" -ge 1

if [ "$MODE" = coordinator ]; then
  # The coordinator (member 0) lists the directory as any member does.
  dir=$("$BIN" members --socket /run/synshare/ss-coord.sock --json 2>&1 | python3 -c 'import json,sys; print(",".join(str(m["id"]) for m in json.load(sys.stdin)["members"]))' 2>&1)
  check "synshare members on the coordinator's socket lists the directory ($dir)" test "$dir" = 0,1,2,3
  # A node whose port rules differ: the coordinator has no rules of its
  # own, so it is the one that must leave it out of its tables (the
  # nodes refuse it too, but the coordinator's table is what they apply).
  "$CLUSTER" kill-node 3
  sed -i 's/rules: \[\]/rules: [(ports: "80", affinity: network)]/' "$STATE/node3.ron"
  "$CLUSTER" start-node 3 >/dev/null 2>&1
  held_of() { node_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchange"]["held"])'; }
  members_of1() { node_json 1 | python3 -c 'import json,sys; print(",".join(str(m["id"]) for m in json.load(sys.stdin)["exchange"]["members"]))'; }
  members="" said=0 both=0
  for _ in $(seq 50); do
    members=$(members_of1)
    said=$(grep -c 'field="\?rules' "$STATE/coord.log")
    both=$(( $(held_of 1) + $(held_of 2) ))
    [ "$members" = 1,2 ] && [ "$said" -gt 0 ] && [ "$both" -eq 65536 ] && break
    sleep 0.2
  done
  check "node3 with other rules: the coordinator says so ($said lines naming rules) and its table leaves node3 out (members $members)" \
    test "$members" = 1,2 -a "$said" -gt 0
  check "node3 holds nothing ($(held_of 3))" test "$(held_of 3)" -eq 0
  check "node1 and node2 hold every bucket ($both)" test "$both" -eq 65536
  "$CLUSTER" kill-node 3
  sed -i 's/rules: \[(ports: "80", affinity: network)\]/rules: []/' "$STATE/node3.ron"
  "$CLUSTER" start-node 3 >/dev/null 2>&1
  check "node3 with the others' rules again is in the table (held $($X held 3))" $X wait-held 3 3 10000 10

  epoch_before=$(node_json 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
  "$CLUSTER" stop-coordinator
  sleep 1
  epoch_after=$(node_json 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
  # Weights still move with the load, so a hand-off (one message delay
  # with a bucket unheld) may be under way at any instant: wait for one
  # epoch and every bucket held rather than sampling once.
  check "the coordinator gone, the nodes keep the table and hold every bucket (epoch $epoch_before -> $epoch_after, held $($X held 3))" \
    "$CLUSTER" wait-converged
  kill_node_timed 3 2
  check "and still fail over among themselves ($FAILOVER ms)" test "$FAILOVER" -ge 0 -a "$FAILOVER" -lt 1000
fi

finish
