# Shared helpers of the namespace tests. Source it; call `finish` last.
# Each check prints "ok" or "FAIL" with what it saw; the counts go to
# $SS_RESULTS (one line per test file) for scripts/test.sh.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER="$ROOT/scripts/cluster.sh"
# Where scripts/cluster.sh keeps the test cluster's configs, logs and pids.
STATE=${SS_STATE:-/tmp/ss-cluster}
BIN="$ROOT/target/release/synshare"
PASSED=0
FAILED=0
# One test cluster at a time on this machine: namespace tests (and anyone
# else driving scripts/cluster.sh through them) take this lock.
exec 9>/tmp/ss-cluster.lock
flock 9
TEST_NAME=$(basename "$0" .sh)
SS_TMP=$(mktemp -d)

pass() { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
# check "description" command...: passes when the command succeeds.
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi; }
# near A B TOL: |A - B| <= TOL
near() { local d=$(( $1 - $2 )); [ "${d#-}" -le "$3" ]; }

client() { ip netns exec ss-client "$@"; }

# stream ARGS...: tests/stream.py from the client to the VIP (new
# connections; see its --help).
stream() { client python3 "$ROOT/tests/stream.py" --host 192.0.2.100 "$@"; }

# tcp_stat NAME: the client kernel's TCP counter NAME from /proc/net/snmp
# (ActiveOpens, EstabResets, AttemptFails, ...).
tcp_stat() { client awk -v k="$1" '/^Tcp:/ { if (!h) { split($0, n); h = 1 } else { for (i = 1; i <= NF; i++) if (n[i] == k) print $i } }' /proc/net/snmp; }

# node_json I: the node's status as JSON.
node_json() { "$BIN" status --socket "/run/synshare/ss-node$1.sock" --json; }

# now: the time in seconds, to the nanosecond; ms_since T: milliseconds
# since T (a `now`).
now() { date +%s.%N; }
ms_since() { python3 -c "import time; print(int((time.time() - $1) * 1000))"; }

# cluster_up N MODE WHAT: brings up N nodes in MODE (scripts/cluster.sh up)
# and passes "WHAT converged" with the buckets each holds; when they do not
# converge, fails and ends the test.
cluster_up() {
  "$CLUSTER" up --nodes "$1" --mode "$2" || { fail "cluster up ($3)"; finish; exit 1; }
  pass "$3 converged: held $(python3 "$ROOT/tests/exchange.py" held "$1")"
}

# kill_node_timed N I: kill -9 of node I of the N; sets KILL_AT (its `now`)
# and FAILOVER, the ms from then until the other nodes hold every bucket in
# one epoch (-1: not within 5 s).
kill_node_timed() {
  KILL_AT=$(now)
  "$CLUSTER" kill-node "$2"
  FAILOVER=$(python3 "$ROOT/tests/exchange.py" failover "$1" "$2" 5 "$KILL_AT")
}

# kill_under_stream N I DELAY OUT ARGS...: starts a stream of new
# connections (stream ARGS... --out OUT) and DELAY s later kills node I of
# the N (kill_node_timed). STREAM_PID is the stream's, for the test's own
# shell to wait for.
kill_under_stream() {
  local n=$1 i=$2 delay=$3 out=$4
  shift 4
  stream "$@" --out "$out" &
  STREAM_PID=$!
  sleep "$delay"
  kill_node_timed "$n" "$i"
}

# failed_later SUMMARY: of the failed connections in SUMMARY (a JSON line
# from exchange.py stream-summary), those started later than 50 ms after
# the kill. One started earlier may have been taken by the killed node
# before the kill (cluster.sh is still starting) and dies with it.
failed_later() { python3 -c 'import json,sys; print(len([t for t in json.loads(sys.argv[1])["failed_started_after_kill_ms"] if t > 50]))' "$1"; }

# capture_synacks FILE: starts the client's own capture of the SYN-ACKs
# from the VIP (tests/synack_capture.py), its JSON to FILE once stopped.
# Run by ip netns exec, not the `client` function: $! is then the capture
# itself, not a subshell.
capture_synacks() {
  ip netns exec ss-client python3 "$ROOT/tests/synack_capture.py" --vip 192.0.2.100 > "$1" 2> "$1.err" &
  CAPTURE_PID=$!
  for _ in $(seq 50); do grep -q capturing "$1.err" && break; sleep 0.1; done
}

# stop_capture: stops it; it writes its JSON as it ends. Called from the
# test's own shell, not in $(...): a subshell cannot wait for it.
stop_capture() { kill -TERM "$CAPTURE_PID" 2>/dev/null; wait "$CAPTURE_PID" 2>/dev/null; CAPTURE_PID=""; }

# answered_twice FILE MIN: after stop_capture, how many client SYNs were
# answered with two servers' ISNs (-1: fewer than MIN attempts captured, or
# no capture).
answered_twice() {
  for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["answered_twice"] if d["attempts"] >= int(sys.argv[2]) else -1)' "$1" "$2" 2>/dev/null || echo -1
}

# stat_of I NAME: node I's exchange statistic NAME (0 when absent).
stat_of() { node_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchange"]["stats"].get(sys.argv[1], 0))' "$2"; }

# counter I NAME: a counter summed over the node's workers.
counter() {
  node_json "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(w["counters"].get(sys.argv[1], 0) for w in s["workers"]))' "$2"
}

# frame_accounting I: "OUTCOMES WORKER_RX PORT_RX" of node I: the outcomes
# of frames from the wire (every counter but the kernel-side and TX ones),
# the frames its workers received, and its wire port's RX count. Each frame
# from the wire ends in exactly one outcome, so the three are equal once no
# frame is in flight. The port, the workers' receive count and the outcomes
# are read at slightly different moments, so a frame arriving meanwhile (a
# late FIN, an ARP) makes one sample unequal: it samples up to 3 s, 0.1 s
# apart, and prints the first equal sample, or the last one.
frame_accounting() {
  local sample o r p
  for _ in $(seq 30); do
    sample=$(node_json "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)
kernel_side = {"wire_from_kernel", "wire_from_kernel_answer", "wire_from_kernel_reset", "wire_from_kernel_refused", "wire_from_kernel_unparsed",
               "drop_kernel_vip_advert", "drop_kernel_stale_flow", "drop_kernel_reset_claimed", "drop_kernel_synack_not_held", "drop_kernel_tx_full", "drop_wire_tx_full"}
w = s["workers"]
print(sum(v for x in w for k, v in x["counters"].items() if k not in kernel_side), sum(x["wire_rx"] for x in w), s["wire"]["ipackets"])')
    read -r o r p <<<"$sample"
    [ -n "$o" ] && [ "$o" = "$r" ] && [ "$r" = "$p" ] && break
    sleep 0.1
  done
  echo "$sample"
}

cleanup() {
  [ -n "${CAPTURE_PID:-}" ] && kill -TERM "$CAPTURE_PID" 2>/dev/null
  "$CLUSTER" down >/dev/null 2>&1 || true
}
trap 'cleanup; rm -rf "$SS_TMP"' EXIT

finish() {
  echo "$TEST_NAME: $PASSED passed, $FAILED failed"
  if [ -n "${SS_RESULTS:-}" ]; then echo "$TEST_NAME $PASSED $FAILED" >> "$SS_RESULTS"; fi
  [ "$FAILED" -eq 0 ]
}
