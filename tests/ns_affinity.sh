#!/usr/bin/env bash
# Port rules (issue 16), three nodes of equal weight in peer mode:
#   port 80    shared, affinity client: every connection of a client address
#              lands on one node; the shares over many addresses follow the
#              weights;
#   port 443   shared, affinity none (the 4-tuple): one client's connections
#              spread over the nodes;
#   port 8080  single host with priority [3, 1]: every connection on node3,
#              on node1 once node3 is killed, on node3 again once it is back
#              (the rule's bucket is node2's by the layout: the priority
#              list, not the table, places it);
#   port 8081  disabled: refused (no answer) and counted on every node.
#
# Why so many addresses for the shares: with client affinity a whole address
# goes to one node, so the share is a share of addresses, not of
# connections. Over N addresses whose values fall in buckets independently
# of the table, a node of share p gets p ± sqrt(p(1-p)/N): with 20 addresses
# that is ±10.5 points (one standard deviation) for p = 1/3, so ±5 points
# would fail one run in three. 1,500 random IPv6 addresses of 2001:db8::/64
# (every 16-bit word random, so the folded value is uniform) make it ±1.2
# points: ±5 points is 4 standard deviations for each node. The 20 IPv4
# addresses, 200 connections each, show the affinity itself. The IPv6
# addresses are in 2001:db8:1::/64, routed by the nodes through the client
# (2001:db8::10): their kernels then need one neighbour, not 1,500.
# A client's connections stay on one node while its bucket stays there:
# the test waits until the shares have settled after start (the last
# node's availability ramps up over a few tables) and checks that no new
# table came during the runs.
source "$(dirname "$0")/lib.sh"

echo "== $TEST_NAME"
RULES='(ports: "80", affinity: client), (ports: "8080", mode: single, priority: [3, 1]), (ports: "8081", mode: disabled)'
"$CLUSTER" up --nodes 3 --weights 1,1,1 --mode peer --cpu off --ports 80,443,8080,8081 --rules "$RULES" \
  || { fail "cluster up"; finish; exit 1; }

# The client's addresses: 20 IPv4 (192.0.2.150-169) and 1,500 IPv6
# (2001:db8:1::/64).
python3 - "$SS_TMP" <<'PY'
import random, sys
d = sys.argv[1]
rng = random.Random(16)
v4 = [f"192.0.2.{150 + i}" for i in range(20)]
v6 = set()
while len(v6) < 1500:
    v6.add("2001:db8:1:0:" + ":".join("%x" % rng.randrange(1, 65536) for _ in range(4)))
open(f"{d}/v4.txt", "w").write("\n".join(v4) + "\n")
open(f"{d}/v6.txt", "w").write("\n".join(sorted(v6)) + "\n")
with open(f"{d}/addrs.batch", "w") as f:
    for a in v4:
        f.write(f"addr add {a}/24 dev eth0\n")
    for a in sorted(v6):
        f.write(f"addr add {a}/128 dev eth0 nodad\n")
PY
client ip -batch "$SS_TMP/addrs.batch"
for i in 1 2 3; do ip netns exec "ss-node$i" ip -6 route add 2001:db8:1::/64 via 2001:db8::10 dev ss-tap; done
client sysctl -qw net.ipv4.ip_local_port_range="10000 60999"

epoch() { node_json 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["epoch"])'; }
# Until node1's table has not changed for 3 s (at most 30 s).
settled=0; last=$(epoch); since=$(date +%s)
for _ in $(seq 300); do
  e=$(epoch)
  if [ "$e" != "$last" ]; then last=$e; since=$(date +%s); fi
  if [ $(( $(date +%s) - since )) -ge 3 ]; then settled=1; break; fi
  sleep 0.1
done
check "the shares settled after start (epoch $last)" test "$settled" -eq 1
epoch_before=$(epoch)

# --- client affinity, per address: 20 addresses x 200 connections ----------
client python3 "$ROOT/tests/affinity.py" --host 192.0.2.100 --port 80 \
  --sources-file "$SS_TMP/v4.txt" --per-source 200 --parallel 16 > "$SS_TMP/v4.json"
read -r count ok one_node spread <<<"$(python3 - "$SS_TMP/v4.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
src = r["sources"]
one = sum(1 for c in src.values() if len(c) == 1)
nodes = {n for c in src.values() for n in c}
print(r["count"], r["ok"], one, len(nodes))
for s, c in sorted(src.items()):
    print("   ", s, c, file=sys.stderr)
PY
)"
check "port 80 (client affinity): all $count connections answered ($ok)" test "$ok" -eq "$count"
check "each of the 20 addresses' 200 connections landed on one node ($one_node of 20)" test "$one_node" -eq 20
check "the 20 addresses used more than one node ($spread)" test "$spread" -gt 1

# --- client affinity, shares over 1,500 addresses ------------------------------
client python3 "$ROOT/tests/affinity.py" --host 2001:db8::100 --port 80 \
  --sources-file "$SS_TMP/v6.txt" --per-source 2 --parallel 16 > "$SS_TMP/v6.json"
read -r count ok one_node s1 s2 s3 worst <<<"$(python3 - "$SS_TMP/v6.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
src = r["sources"]
one = sum(1 for c in src.values() if len(c) == 1)
per_node = {}
for c in src.values():
    for n, k in c.items():
        per_node[n] = per_node.get(n, 0) + k
ok = max(r["ok"], 1)
shares = [100.0 * per_node.get(f"node{i}", 0) / ok for i in (1, 2, 3)]
worst = max(abs(s - 100 / 3) for s in shares)
print(r["count"], r["ok"], one, " ".join(f"{s:.1f}" for s in shares), f"{worst:.2f}")
PY
)"
check "IPv6, 1500 addresses x 2: all $count connections answered ($ok)" test "$ok" -eq "$count"
check "each address's connections on one node ($one_node of 1500)" test "$one_node" -eq 1500
check "shares over connections node1 $s1% node2 $s2% node3 $s3% within 5 points of 33.3 (worst $worst)" \
  python3 -c "import sys; sys.exit(0 if $worst <= 5.0 else 1)"
epoch_after=$(epoch)
check "no new table while the affinity runs ran (epoch $epoch_before, then $epoch_after)" test "$epoch_before" = "$epoch_after"

# --- affinity none on port 443 of the same VIP: one client spreads ----------
echo 192.0.2.150 > "$SS_TMP/one.txt"
client python3 "$ROOT/tests/affinity.py" --host 192.0.2.100 --port 443 \
  --sources-file "$SS_TMP/one.txt" --per-source 300 --parallel 16 > "$SS_TMP/443.json"
read -r count ok n1 n2 n3 <<<"$(python3 - "$SS_TMP/443.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["sources"].get("192.0.2.150", {})
print(r["count"], r["ok"], *(c.get(f"node{i}", 0) for i in (1, 2, 3)))
PY
)"
check "port 443 (4-tuple): all $count connections of one address answered ($ok)" test "$ok" -eq "$count"
check "and spread over the three nodes ($n1 / $n2 / $n3; each at least 15%)" \
  test "$n1" -ge 45 -a "$n2" -ge 45 -a "$n3" -ge 45

# --- disabled port 8081 ---------------------------------------------------------
before=0
for i in 1 2 3; do before=$((before + $(counter $i drop_vip_port_disabled))); done
refused=$(client python3 -c '
import socket
n = 0
for a in ("192.0.2.100", "2001:db8::100"):
    for _ in range(3):
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
        s.settimeout(0.5)
        try:
            s.connect((a, 8081))
        except OSError:
            n += 1
        s.close()
print(n)')
check "port 8081 (disabled): 6 of 6 connection attempts fail ($refused)" test "$refused" -eq 6
sleep 0.3
all_counted=1; counts=""
for i in 1 2 3; do
  c=$(counter $i drop_vip_port_disabled); counts+=" node$i=$c"
  [ "$c" -ge 6 ] || all_counted=0
done
check "every node counted the SYNs to 8081 as drop_vip_port_disabled ($counts)" test "$all_counted" -eq 1

# --- single host on port 8080, and its move when that node dies --------------
single_node() {  # single_node FILE: "COUNT OK NODES"
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
nodes = sorted({n for c in r["sources"].values() for n in c})
print(r["count"], r["ok"], ",".join(nodes) or "none")
PY
}
head -5 "$SS_TMP/v4.txt" > "$SS_TMP/five.txt"
{ head -4 "$SS_TMP/v6.txt"; echo 2001:db8::10; } > "$SS_TMP/five6.txt"
client python3 "$ROOT/tests/affinity.py" --host 192.0.2.100 --port 8080 \
  --sources-file "$SS_TMP/five.txt" --per-source 20 > "$SS_TMP/single.json"
client python3 "$ROOT/tests/affinity.py" --host 2001:db8::100 --port 8080 \
  --sources-file "$SS_TMP/five6.txt" --per-source 20 > "$SS_TMP/single6.json"
read -r count ok nodes <<<"$(single_node "$SS_TMP/single.json")"
check "port 8080 (single host): all $count connections from 5 addresses answered ($ok)" test "$ok" -eq "$count"
check "and all on node3, the first of its priority list ($nodes)" test "$nodes" = node3
read -r count6 ok6 nodes6 <<<"$(single_node "$SS_TMP/single6.json")"
check "IPv6 VIP port 8080: all $count6 connections answered ($ok6), all on one node ($nodes6)" \
  bash -c "[ '$ok6' -eq '$count6' ] && [ '$nodes6' = node3 ]"
if [[ $nodes =~ ^node([123])$ ]]; then
  dead=${BASH_REMATCH[1]}
  "$CLUSTER" kill-node "$dead"
  survivors=$(seq 1 3 | grep -v "^$dead$" | tr '\n' ' ')
  moved=0
  for _ in $(seq 100); do
    held=0
    for i in $survivors; do held=$((held + $(node_json "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["held"])'))); done
    [ "$held" -eq 65536 ] && { moved=1; break; }
    sleep 0.1
  done
  check "after node$dead was killed the others hold every bucket" test "$moved" -eq 1
  client python3 "$ROOT/tests/affinity.py" --host 192.0.2.100 --port 8080 \
    --sources-file "$SS_TMP/five.txt" --per-source 20 > "$SS_TMP/single2.json"
  read -r count ok nodes2 <<<"$(single_node "$SS_TMP/single2.json")"
  check "port 8080 after the kill: all $count connections answered ($ok)" test "$ok" -eq "$count"
  check "all on node1, the next of its priority list ($nodes2, was node$dead)" test "$nodes2" = node1
  "$CLUSTER" start-node "$dead" >/dev/null 2>&1
  back=0
  for _ in $(seq 100); do
    [ "$(node_json "$dead" | python3 -c 'import json,sys; print(json.load(sys.stdin)["held"])')" -gt 0 ] && { back=1; break; }
    sleep 0.1
  done
  check "node$dead restarted holds buckets again" test "$back" -eq 1
  "$CLUSTER" wait-converged >/dev/null 2>&1
  client python3 "$ROOT/tests/affinity.py" --host 192.0.2.100 --port 8080 \
    --sources-file "$SS_TMP/five.txt" --per-source 20 > "$SS_TMP/single3.json"
  read -r count ok nodes3 <<<"$(single_node "$SS_TMP/single3.json")"
  check "node$dead back: port 8080 all on node3 again ($nodes3; $ok of $count answered)" \
    bash -c "[ '$nodes3' = node3 ] && [ '$ok' -eq '$count' ]"
  dead=""
fi

for i in 1 2 3; do
  [ "$i" = "${dead:-0}" ] && continue
  read -r outcomes worker_rx port_rx <<<"$(frame_accounting $i)"
  check "node$i accounts for every frame it saw ($outcomes outcomes, $worker_rx received, port $port_rx)" \
    test "$outcomes" -eq "$worker_rx" -a "$worker_rx" -eq "$port_rx"
done

finish
