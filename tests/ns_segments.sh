#!/usr/bin/env bash
# Several segments (patent Fig. 6, claims 11-15): node2 has wire ports on
# segments A and B and keeps one member set and one table per segment;
# shares on each segment follow the capacity of the members on it, over
# IPv4 and IPv6.
source "$(dirname "$0")/lib.sh"
echo "== $TEST_NAME"
"$CLUSTER" up-segments --weights 1,1,3 || { fail "two-segment cluster up"; finish; exit 1; }
node_json 2 | python3 -c '
import json, sys
s = json.load(sys.stdin)
for seg in [s] + s["segments"]:
    x = seg["exchange"]
    print("    node2 segment %d (exchange segment %d): epoch %d, members %s, holds %d" % (
        seg["segment"], x["segment"], x["epoch"], [(m["id"], m["weight"], round(m["share_pct"], 1)) for m in x["members"]], seg["held"]))'
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 1500 --parallel 16 > "$SS_TMP/a.json"
ip netns exec ss-client2 python3 "$ROOT/tests/client.py" --host 192.0.2.200 --count 1500 --parallel 16 > "$SS_TMP/b.json"
sed 's/^/    A: /' "$SS_TMP/a.json"; sed 's/^/    B: /' "$SS_TMP/b.json"
share() { python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(round(100 * r["nodes"].get(sys.argv[2], 0) / max(r["ok"], 1), 1), r["ok"])' "$1" "$2"; }
read -r a1 okA <<<"$(share "$SS_TMP/a.json" node1)"; read -r a2 _ <<<"$(share "$SS_TMP/a.json" node2)"
read -r b2 okB <<<"$(share "$SS_TMP/b.json" node2)"; read -r b3 _ <<<"$(share "$SS_TMP/b.json" node3)"
check "segment A: all 1500 answered ($okA), by node1 and node2 only" test "$okA" -eq 1500 -a "$(python3 -c "print(round($a1 + $a2))")" -eq 100
check "segment A shares follow capacities 1:1 (node1 $a1%, node2 $a2%; within 3 points of 50)" python3 -c "import sys; sys.exit(0 if abs($a1 - 50) <= 3 else 1)"
check "segment B: all 1500 answered ($okB), by node2 and node3 only" test "$okB" -eq 1500 -a "$(python3 -c "print(round($b2 + $b3))")" -eq 100
check "segment B shares follow capacities 1:3 (node2 $b2%, node3 $b3%; within 3 points of 25/75)" python3 -c "import sys; sys.exit(0 if abs($b2 - 25) <= 3 else 1)"
# IPv6 on both segments.
client python3 "$ROOT/tests/client.py" --host 2001:db8:a::100 --count 600 --parallel 16 > "$SS_TMP/a6.json"
ip netns exec ss-client2 python3 "$ROOT/tests/client.py" --host 2001:db8:b::200 --count 600 --parallel 16 > "$SS_TMP/b6.json"
sed 's/^/    A6: /' "$SS_TMP/a6.json"; sed 's/^/    B6: /' "$SS_TMP/b6.json"
read -r a1 okA <<<"$(share "$SS_TMP/a6.json" node1)"; read -r a2 _ <<<"$(share "$SS_TMP/a6.json" node2)"
read -r b2 okB <<<"$(share "$SS_TMP/b6.json" node2)"; read -r b3 _ <<<"$(share "$SS_TMP/b6.json" node3)"
check "segment A over IPv6: all 600 answered ($okA) by node1 ($a1%) and node2 ($a2%) only, about 1:1" \
  bash -c "test $okA -eq 600 && python3 -c 'import sys; sys.exit(0 if round($a1 + $a2) == 100 and abs($a1 - 50) <= 6 else 1)'"
check "segment B over IPv6: all 600 answered ($okB) by node2 ($b2%) and node3 ($b3%) only, about 1:3" \
  bash -c "test $okB -eq 600 && python3 -c 'import sys; sys.exit(0 if round($b2 + $b3) == 100 and abs($b2 - 25) <= 6 else 1)'"
# A change on one segment leaves the other's table alone.
epochs() { node_json 2 | python3 -c 'import json,sys; s = json.load(sys.stdin); print(s["epoch"], s["segments"][0]["epoch"])'; }
read -r ea eb <<<"$(epochs)"
"$BIN" capacity 3 --socket /run/synshare/ss-node1.sock >/dev/null
sleep 1.5
read -r ea2 eb2 <<<"$(epochs)"
check "node1's capacity change made a new table on A only (A $ea -> $ea2, B $eb -> $eb2)" test "$ea2" -gt "$ea" -a "$eb2" = "$eb"
finish
