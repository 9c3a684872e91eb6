#!/usr/bin/env bash
# The status page on the metrics port, loaded in headless Chromium against a
# running 3-node cluster (weights 1, 2, 3): the buckets it draws per member
# (counted from the table it fetched) and the shares it shows must match
# `synshare status --json`; it keeps a history of the last minutes.
source "$(dirname "$0")/lib.sh"
echo "== $TEST_NAME"
if ! command -v chromium >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >"$SS_TMP/apt.log" 2>&1
fi
check "headless Chromium is there" command -v chromium
"$CLUSTER" up --nodes 3 --mode peer --weights 1,2,3 --cpu off || { fail "cluster up"; finish; exit 1; }
pass "3 nodes converged"
sleep 3   # a few history points
chrome() { ip netns exec ss-node1 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=4000 "$@" 2>/dev/null; }
chrome --dump-dom http://127.0.0.1:9746/ > "$SS_TMP/page.html"
node_json 1 > "$SS_TMP/status.json"
chrome --screenshot="$SS_TMP/status-page.png" --window-size=1100,720 http://127.0.0.1:9746/ >/dev/null
python3 - "$SS_TMP/page.html" "$SS_TMP/status.json" <<'PY'
import json, re, sys
page = open(sys.argv[1]).read()
status = json.load(open(sys.argv[2]))
drawn = {int(m): int(b) for m, b in re.findall(r'<tr data-member="(\d+)" data-buckets="(\d+)"', page)}
want = {m["id"]: m["buckets"] for m in status["members"]}
print("    page draws", drawn, "; status says", want)
assert 'data-ready="1"' in page, "the page did not finish drawing"
assert drawn == want, (drawn, want)
assert sum(drawn.values()) == status["buckets"], "every bucket drawn"
shares = re.findall(r'<td>(\d+\.\d)%</td>', page)
assert [float(s) for s in shares] == [round(m["share_pct"], 1) for m in status["members"]], shares
assert page.count("<path") >= 3, "history lines drawn"
PY
check "the page draws each member's buckets and shares as synshare status --json says" test $? -eq 0
check "the page took a screenshot" test -s "$SS_TMP/status-page.png"
[ -n "${SS_SCREENSHOT:-}" ] && cp "$SS_TMP/status-page.png" "$SS_SCREENSHOT"
finish
