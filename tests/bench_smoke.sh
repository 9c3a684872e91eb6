#!/usr/bin/env bash
# Smoke run of the benchmark tools, for CI: `synshare-bench pktgen` writes a
# small pcap, `synshare-bench bench` replays it for about 2 s (with
# --no-huge, so it needs no hugepages) and must report a positive Mpps.
# Standalone: it does not use tests/lib.sh (whose clean-up tears namespaces
# down). Ends with "bench_smoke: N passed, M failed" and appends
# "bench_smoke N M" to $SS_RESULTS when set. It runs
# target/release/synshare-bench, or SS_BENCH_BIN=PATH.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SS_BENCH_BIN:-$ROOT/target/release/synshare-bench}
PASSED=0
FAILED=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

pass() { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }

finish() {
  echo "bench_smoke: $PASSED passed, $FAILED failed"
  if [ -n "${SS_RESULTS:-}" ]; then echo "bench_smoke $PASSED $FAILED" >>"$SS_RESULTS"; fi
  [ "$FAILED" -eq 0 ]
}

if [ ! -x "$BIN" ]; then
  fail "no binary at $BIN (cargo build --release -p synshare-bench)"
  finish
  exit 1
fi

if "$BIN" pktgen --out "$TMP/smoke.pcap" --flows 2000 --size imix >"$TMP/pktgen.out" 2>&1 \
  && [ -s "$TMP/smoke.pcap" ]; then
  pass "pktgen wrote a pcap ($(head -1 "$TMP/pktgen.out"))"
else
  fail "pktgen: $(tail -3 "$TMP/pktgen.out")"
fi

if "$BIN" pktgen --out "$TMP/bad.pcap" --flows nope >/dev/null 2>&1; then
  fail "pktgen accepted --flows nope"
else
  pass "pktgen refuses bad input"
fi

timeout 60 "$BIN" bench --pcap "$TMP/smoke.pcap" --duration 2 --warmup 0.5 --no-huge \
  --file-prefix "ss-smoke-$$" --json </dev/null >"$TMP/bench.out" 2>"$TMP/bench.err"
rc=$?
line=$(grep '^{' "$TMP/bench.out" | tail -1)
if [ $rc -eq 0 ] && [ -n "$line" ]; then
  pass "bench ran"
else
  fail "bench exited $rc: $(tail -3 "$TMP/bench.err")"
fi
mpps=$(echo "$line" | python3 -c 'import json, sys; print(json.load(sys.stdin)["mpps"])' 2>/dev/null || echo 0)
if awk -v m="$mpps" 'BEGIN { exit !(m > 0) }'; then
  pass "bench reports $mpps Mpps"
else
  fail "bench reports no throughput (${mpps:-nothing})"
fi
flows=$(echo "$line" | python3 -c 'import json, sys; print(json.load(sys.stdin)["flows_loaded"])' 2>/dev/null || echo 0)
if [ "${flows:-0}" -gt 1800 ]; then
  pass "bench pre-loaded $flows flows of 2000"
else
  fail "bench pre-loaded ${flows:-no} flows"
fi

finish
