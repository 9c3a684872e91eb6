#!/usr/bin/env bash
# The test command. On a fresh machine it installs what it needs (via
# scripts/setup.sh), then runs: formatting and clippy, whether the offline
# test fixtures are current, the unit and property tests, the DPDK layer
# under a real EAL, and the namespace tests with real synshare nodes,
# kernels and clients. Ends with "N passed, M failed".
#
#   scripts/test.sh             everything
#   scripts/test.sh --quick     skip the namespace tests
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = --quick ] && quick=1

scripts/setup.sh || { echo "synshare: 0 passed, 1 failed"; exit 1; }

results=$(mktemp)
export SS_RESULTS=$results
trap 'rm -f "$results"' EXIT
log=$(mktemp)

record() { echo "$1 $2 $3" >> "$results"; }
stage() {
  local name=$1; shift
  echo "== $name: $*"
  if "$@"; then record "$name" 1 0; else echo "== $name FAILED"; record "$name" 0 1; fi
}

stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --workspace --all-targets --release --quiet -- -D warnings
# The offline hostile-traffic fixtures are what tests/hostile.py writes (no root, < 1 s).
stage fixtures bash tests/fixtures_current.sh

echo "== cargo test (unit, property, DPDK under EAL)"
cargo test --workspace --release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r p f <<<"$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } } END { print p + 0, f + 0 }' "$log")"
if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
record cargo-test "$p" "$f"

echo "== fuzzing, a short bounded run of every target"
if scripts/fuzz.sh 15; then record fuzz 1 0; else record fuzz 0 1; fi

echo "== benchmark smoke run"
bash tests/bench_smoke.sh || true
grep -q '^bench_smoke ' "$results" || record bench_smoke 0 1

if [ $quick -eq 0 ]; then
  for t in tests/ns_*.sh; do
    bash "$t" || true
    # A test that died before finishing reports nothing: count it failed.
    grep -q "^$(basename "$t" .sh) " "$results" || record "$(basename "$t" .sh)" 0 1
  done
fi

echo "== summary"
awk '{ printf "  %-22s %4d passed, %d failed\n", $1, $2, $3; p += $2; f += $3 } END { printf "synshare: %d passed, %d failed\n", p, f; exit (f > 0) }' "$results"
