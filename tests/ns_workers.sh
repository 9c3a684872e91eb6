#!/usr/bin/env bash
# Two nodes with two workers each (af_packet queue pairs, kernel fan-out by
# flow hash) and the contiguous-ranges layout: every connection served
# once, flows spread over both workers.
source "$(dirname "$0")/lib.sh"

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 2 --workers 2 --layout ranges || { fail "cluster up"; finish; exit 1; }
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 1000 --parallel 16 > "$SS_TMP/c.json"
client python3 "$ROOT/tests/client.py" --host 2001:db8::100 --count 500 --parallel 16 > "$SS_TMP/c6.json"
sed 's/^/    /' "$SS_TMP/c.json" "$SS_TMP/c6.json"
ok=$(cat "$SS_TMP/c.json" "$SS_TMP/c6.json" | python3 -c 'import json,sys; print(sum(json.loads(l)["ok"] for l in sys.stdin))')
check "1500 connections answered ($ok)" test "$ok" -eq 1500
sleep 0.3
for i in 1 2; do
  read -r w0 w1 <<<"$(node_json $i | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(" ".join(str(w["counters"].get("kernel_vip_syn", 0)) for w in s["workers"]))')"
  check "node$i: both workers accepted connections ($w0 and $w1 SYNs)" test "$w0" -gt 50 -a "$w1" -gt 50
done
finish
