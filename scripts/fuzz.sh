#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default
# 30), one after the other, and prints each one's executions and coverage
# (libFuzzer's final "#N DONE cov: X ft: Y" line). Exits non-zero when a
# target finds a crash (the input is in fuzz/artifacts/TARGET/) or when the
# tools cannot be installed or built.
#
#   scripts/fuzz.sh [SECONDS]            e.g. scripts/fuzz.sh 15 in the test command
#   SS_FUZZ_TARGETS="classify" scripts/fuzz.sh 60
#
# cargo-fuzz needs nightly compiler flags; on a stable toolchain they are
# enabled with RUSTC_BOOTSTRAP=1. AddressSanitizer is used when it builds,
# otherwise the targets run without a sanitizer (Rust's own bounds and
# overflow checks still apply). The corpus grows in fuzz/corpus/TARGET;
# fuzz/seeds/TARGET is written by fuzz/examples/seeds.rs from synthetic
# frames and heartbeats.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
targets=${SS_FUZZ_TARGETS:-classify packet_parse heartbeat exchange}
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  if ! cargo install --locked cargo-fuzz; then
    echo "fuzz: could not install cargo-fuzz; cannot fuzz" >&2
    exit 1
  fi
fi

cd fuzz
sanitizer=address
if ! cargo fuzz build --sanitizer address >build.log 2>&1; then
  echo "fuzz: the AddressSanitizer build failed (tail of fuzz/build.log below); trying without a sanitizer"
  tail -5 build.log | sed 's/^/    /'
  sanitizer=none
  if ! cargo fuzz build --sanitizer none >build.log 2>&1; then
    echo "fuzz: the fuzz targets do not build:" >&2
    tail -30 build.log >&2
    exit 1
  fi
fi
rm -f build.log

if ! cargo run --quiet --release --example seeds -- seeds >/dev/null 2>seeds.log; then
  echo "fuzz: the seed writer failed:" >&2
  cat seeds.log >&2
  exit 1
fi
rm -f seeds.log

failed=0
summary=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  log=$(mktemp)
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak.
  cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  execs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")
  cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, ft \2, corpus \3/p' <<<"$done_line")
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    line="$t: ${execs:-?} executions in ${secs} s, $cov ($sanitizer sanitizer)"
    echo "fuzz $line"
    echo "    $done_line"
  else
    failed=$((failed + 1))
    line="$t: FAILED (exit $rc) after ${execs:-?} executions"
    echo "fuzz $line"
    { grep -E -A1 "panicked at" "$log" | head -4; grep -E "ERROR: |Test unit written" "$log" | head -4; } | sed 's/^/    /'
    ls -t "artifacts/$t" 2>/dev/null | head -3 | sed "s|^|    artifact: fuzz/artifacts/$t/|"
  fi
  summary+=("$line")
  rm -f "$log"
done

echo "== fuzz summary"
for l in "${summary[@]}"; do echo "  $l"; done
[ "$failed" -eq 0 ]
