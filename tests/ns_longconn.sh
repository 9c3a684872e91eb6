#!/usr/bin/env bash
# A connection lives as long as its client wants, in a 3-node peer cluster
# with a drain period of 6 s:
#  (a) keep-alive connections, some on a node that is then drained and some
#      on a node whose weight changes; for half of them a forged RST (random
#      sequence number, right and wrong TCP checksum) and a forged SYN with
#      their tuple; every connection answers a request right after the
#      move, again after 3 x the drain period, and a second after that; the
#      client sees no RST from the VIP; `drain --wait` returns only once the
#      client has closed the drained node's connections;
#  (b) connections open for SS_LONG_S seconds (300 by default) across a
#      drain and an undrain, two weight changes and a restart of another
#      node: none reset, none stalled.
source "$(dirname "$0")/lib.sh"
DRAIN_MS=6000
export SS_DRAIN_MS=$DRAIN_MS
LONG_S=${SS_LONG_S:-300}
L="python3 $ROOT/tests/longconn.py"
sock() { echo "/run/synshare/ss-node$1.sock"; }
json_get() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

# hold NAME COUNT: a client process holding COUNT keep-alive connections.
hold() {
  client $L serve --host 192.0.2.100 --count "$2" --control "$SS_TMP/$1.sock" >"$SS_TMP/$1.out" 2>&1 &
  for _ in $(seq 100); do [ -S "$SS_TMP/$1.sock" ] && return 0; sleep 0.1; done
  cat "$SS_TMP/$1.out"; return 1
}
lc() { local name=$1; shift; client $L cmd "$SS_TMP/$name.sock" "$@"; }
# requests NAME WHAT: one request on every connection of NAME, all answered.
requests() {
  local out; out=$(lc "$1" request)
  local ok; ok=$(json_get 'd["ok"]' <<<"$out")
  local failed; failed=$(json_get 'len(d["failed"])' <<<"$out")
  echo "    $2: $ok answered, $failed failed $(json_get 'd["failed"][:5]' <<<"$out")"
  check "$2: every connection answers ($ok answered, $failed failed)" test "$failed" -eq 0 -a "$ok" -gt 0
}

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 3 --mode peer --cpu off || { fail "cluster up"; finish; exit 1; }
pass "3 nodes converged (drain period $DRAIN_MS ms)"

# --- (a) moves and forgeries -------------------------------------------------
hold a 48 || { fail "48 keep-alive connections"; finish; exit 1; }
nodes=$(lc a nodes)
echo "    connections per node: $(json_get '{k: len(v) for k, v in d.items()}' <<<"$nodes")"
on3=$(json_get 'len(d.get("node3", []))' <<<"$nodes")
on1=$(json_get 'len(d.get("node1", []))' <<<"$nodes")
check "connections on node3 (to be drained: $on3) and node1 (its weight changes: $on1)" test "$on3" -gt 0 -a "$on1" -gt 0
# Every bucket settled before the move, as in a cluster that has run a while.
sleep $(( DRAIN_MS / 1000 + 1 ))
"$BIN" drain --socket "$(sock 3)" >/dev/null
"$BIN" capacity 3 --socket "$(sock 1)" >/dev/null
sleep 1.5
# Forged segments for every other connection.
forged=0
for port in $(json_get '" ".join(str(p) for v in d.values() for p in v[::2])' <<<"$nodes"); do
  for kind in rst-good rst-bad syn; do lc a spoof "$port" "$kind" >/dev/null && forged=$((forged + 1)); done
done
echo "    sent $forged forged segments (RST with a right and a wrong checksum, SYN) for half of the connections"
held3=$(node_json 3 | json_get 'd["exchange"]["held"]')
check "node3 drained holds no bucket ($held3)" test "$held3" -eq 0
requests a "right after the move"
sleep $(( 3 * DRAIN_MS / 1000 ))
requests a "3 x the drain period later"
sleep 1
requests a "a second after that"
rsts=$(lc a rsts | json_get 'd["rsts"]')
check "the client saw no RST from the VIP ($rsts)" test "$rsts" -eq 0
# drain --wait returns only once node3's connections are closed.
"$BIN" drain --socket "$(sock 3)" --wait --timeout 60 >"$SS_TMP/wait.out" 2>&1 &
wait_pid=$!
sleep 3
check "drain --wait still waits while node3 serves connections" kill -0 "$wait_pid"
lc a close node3 >/dev/null
t0=$(date +%s%N)
wait "$wait_pid"; wait_rc=$?
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "    drain --wait returned $waited ms after the client closed node3's connections (exit $wait_rc)"
check "drain --wait returns once the client closed them (exit $wait_rc, $waited ms)" test "$wait_rc" -eq 0 -a "$waited" -lt 15000
lc a quit >/dev/null
"$BIN" undrain --socket "$(sock 3)" >/dev/null
"$BIN" capacity 1 --socket "$(sock 1)" >/dev/null

# --- (b) connections that outlive a drain, weight changes and a restart ----
sleep 2
hold b 24 || { fail "24 long connections"; finish; exit 1; }
echo "    long connections per node: $(lc b nodes | json_get '{k: len(v) for k, v in d.items()}')"
step=$(( LONG_S / 6 ))
bad=0
for phase in "drain node2" "undrain node2" "node1 weight 3" "node1 weight 1" "restart node3" "none"; do
  case $phase in
    "drain node2") "$BIN" drain --socket "$(sock 2)" >/dev/null ;;
    "undrain node2") "$BIN" undrain --socket "$(sock 2)" >/dev/null ;;
    "node1 weight 3") "$BIN" capacity 3 --socket "$(sock 1)" >/dev/null ;;
    "node1 weight 1") "$BIN" capacity 1 --socket "$(sock 1)" >/dev/null ;;
    "restart node3") "$CLUSTER" stop-node 3; "$CLUSTER" start-node 3 ;;
  esac
  for _ in $(seq $(( step / 10 ))); do
    sleep 10
    out=$(lc b request)
    f=$(json_get 'len(d["failed"])' <<<"$out")
    [ "$f" -eq 0 ] || { bad=$((bad + f)); echo "    after '$phase': $out"; }
  done
done
rsts=$(lc b rsts | json_get 'd["rsts"]')
echo "    $LONG_S s of requests every 10 s on 24 connections: $bad failed, $rsts RSTs from the VIP"
check "connections open $LONG_S s across a drain, an undrain, two weight changes and a restart: none failed ($bad)" test "$bad" -eq 0
check "and no RST from the VIP ($rsts)" test "$rsts" -eq 0
lc b quit >/dev/null
finish
