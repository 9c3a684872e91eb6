#!/usr/bin/env bash
# The committed offline fixtures are what the generator writes today:
# `tests/hostile.py pcap` into a temporary directory, compared file for file
# and byte for byte with dataplane/tests/fixtures/hostile (which
# dataplane/tests/hostile_fixtures.rs decides). No root, no build, well
# under a second. After changing a case in tests/hostile.py:
#   python3 tests/hostile.py pcap dataplane/tests/fixtures/hostile
# and commit the fixtures with the change.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURES=$ROOT/dataplane/tests/fixtures/hostile
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$ROOT/tests/hostile.py" pcap "$tmp"
if diff -rq "$FIXTURES" "$tmp"; then
  echo "fixtures current: $(ls "$tmp" | grep -c '\.pcap$') pcap files and expected.tsv in ${FIXTURES#"$ROOT"/}"
else
  echo "fixtures stale: regenerate with python3 tests/hostile.py pcap ${FIXTURES#"$ROOT"/} and commit" >&2
  exit 1
fi
