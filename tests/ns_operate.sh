#!/usr/bin/env bash
# Operating a cluster: check-config on ten broken configurations, --help on
# every command, `synshare status` and the metrics endpoint against what the
# client actually sees, drain and undrain.
source "$(dirname "$0")/lib.sh"
X="python3 $ROOT/tests/exchange.py"
echo "== $TEST_NAME"

# --- check-config: broken configurations ----------------------------------
# Each is configs/node.ron with one edit; check-config must refuse it with
# exit 78 (EX_CONFIG), naming the file, line, column and field. The first
# ten fail in parsing or the old checks; the rest are issue 11's: what used
# to pass check-config and then fail at start.
good="$ROOT/configs/node.ron"
check "check-config accepts configs/node.ron" "$BIN" check-config "$good"
check "check-config --json says valid" bash -c '"$1" check-config --json "$2" | python3 -c "import json,sys; assert json.load(sys.stdin)[\"valid\"] is True"' _ "$BIN" "$good"
i=0
while IFS='|' read -r field from to; do
  [ -z "$field" ] && continue
  i=$((i + 1))
  f="$SS_TMP/broken$i.ron"
  python3 -c "import sys; t = open(sys.argv[1]).read(); assert sys.argv[2] in t, sys.argv[2]; open(sys.argv[4], 'w').write(t.replace(sys.argv[2], sys.argv[3], 1))" "$good" "$from" "$to" "$f"
  msg=$("$BIN" check-config "$f" 2>&1); rc=$?
  echo "    $msg" | head -3
  check "broken config $i: exit 78, names $field at file:line:col" \
    bash -c '[ "$1" -eq 78 ] && grep -F -- "field \`$2\`:" <<<"$3" | grep -qE "^$4:[0-9]+:[0-9]+: "' _ "$rc" "$field" "$msg" "$f"
done <<'CASES'
cluster_mac|"02:5e:00:00:01:00"|"02:5e:00:00:01"
eal.file_prefix|file_prefix: "synshare"|file_prefix: "a/b"
sharing.buckets|buckets: 65536|buckets: 1000
sharing.layout|layout: rendezvous|layout: diagonal
exchange.timeout_ms|timeout_ms: 400|timeout_ms: 50
exchange.peers.1|3: "192.0.2.23:7946"|1: "192.0.2.23:7946"
vips[0].addr|"192.0.2.100"|"192.0.2.300"
wire.rx_desc|rx_desc: 1024|rx_desc: 1000
flow_table.capacity|capacity: 1048576|capacity: 10
workers|workers: 1|workers: 0
workers|workers: 1|workers: 4
eal.lcores|lcores: "2,3"|lcores: "2"
eal.lcores|lcores: "2,3"|lcores: "two,three"
eal.main_lcore|main_lcore: Some(2)|main_lcore: Some(7)
wire.rss|rss: false|rss: true
vips[0].addr|"192.0.2.100"|"255.255.255.255"
exception.mac|mac: None|mac: Some("02:5e:00:00:01:00")
sharing.drain_ms|drain_ms: 60000|drain_ms: 0
flow_table.half_open_ms|half_open_ms: 5000|half_open_ms: 86400000
name|name: "node1"|name: "../../tmp/x"
CASES
coord="$SS_TMP/coordinator.ron"
sed 's|key_file: Some("/etc/synshare/cluster.key")|key: "0123456789abcdef0123456789abcdef"|; s|name: "coordinator"|name: "../../tmp/x"|' \
  "$ROOT/configs/coordinator.ron" > "$coord"
msg=$("$BIN" check-config --coordinator "$coord" 2>&1); rc=$?
echo "    $msg"
check "a coordinator named ../../tmp/x: exit 78, names the field" bash -c '[ "$1" -eq 78 ] && grep -qE "coordinator.ron:[0-9]+:[0-9]+: field \`name\`" <<<"$2"' _ "$rc" "$msg"
check "check-config on a missing file fails" bash -c '! "$1" check-config /nonexistent.ron' _ "$BIN"
for cmd in node check-config status nodes drain undrain capacity coordinator; do
  check "synshare $cmd --help" bash -c '"$1" "$2" --help | grep -q synshare' _ "$BIN" "$cmd"
done
check "synshare help node is node's help" bash -c '"$1" help node | grep -q -- "--config <FILE>"' _ "$BIN"
check "synshare node --confg (a typo) is a usage error" bash -c '"$1" node --confg x; [ $? -eq 2 ]' _ "$BIN"

# --- status and metrics against what the client sees ------------------------
"$CLUSTER" up --nodes 3 --mode peer --weights 1,2,3 --cpu off || { fail "cluster up"; finish; exit 1; }
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 3000 --parallel 16 > "$SS_TMP/c.json"
sleep 0.3
read -r seen <<<"$(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(",".join("%.1f" % (100 * r["nodes"].get("node%d" % i, 0) / r["ok"]) for i in (1, 2, 3)))' "$SS_TMP/c.json")"
reported=$(node_json 1 | python3 -c 'import json,sys; s = json.load(sys.stdin); print(",".join("%.1f" % m["share_pct"] for m in s["members"]))')
echo "    the client saw shares $seen; synshare status reports $reported"
check "status shows the shares the client sees (within 3 points)" python3 -c "
a = [float(x) for x in '$seen'.split(',')]; b = [float(x) for x in '$reported'.split(',')]
import sys; sys.exit(0 if len(a) == len(b) == 3 and max(abs(x - y) for x, y in zip(a, b)) <= 3 else 1)"
ip netns exec ss-node1 curl -s -m5 http://127.0.0.1:9746/metrics > "$SS_TMP/metrics.txt"
node_json 1 > "$SS_TMP/status.json"
check "metrics endpoint serves the same shares and counters as status" python3 - "$SS_TMP/metrics.txt" "$SS_TMP/status.json" <<'PY'
import json, re, sys
m = open(sys.argv[1]).read()
s = json.load(open(sys.argv[2]))
def val(name, **labels):
    for line in m.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise SystemExit(f"no {name} {labels}")
for mem in s["members"]:
    assert abs(val("synshare_member_share_ratio", member=mem["id"]) * 100 - mem["share_pct"]) < 0.01, mem
syn_m = val("synshare_frames_total", worker=0, outcome="kernel_vip_syn")
syn_s = s["workers"][0]["counters"]["kernel_vip_syn"]
assert syn_m >= syn_s and syn_m - syn_s < 50, (syn_m, syn_s)
assert val("synshare_held_buckets") == s["held"]
assert val("synshare_exchange_datagrams_total", kind="heartbeat", event="accepted") > 0
assert val("synshare_build_info") == 1
assert val("synshare_peer_up", peer=2) == 1 and val("synshare_fenced") == 0
print("metrics:", len(m.splitlines()), "lines")
PY

# --- drain and undrain ---------------------------------------------------------
# Twenty idle connections held open to node3's metrics port (its own
# thread) must not delay drain on the status socket.
ip netns exec ss-node3 python3 -c '
import socket, sys, time
s = [socket.create_connection(("127.0.0.1", 9746)) for _ in range(20)]
print("held", flush=True)
time.sleep(8)' > "$SS_TMP/idle.out" 2>&1 &
idle=$!
for _ in $(seq 50); do grep -q held "$SS_TMP/idle.out" && break; sleep 0.1; done
t0=$(date +%s%N)
"$BIN" drain --socket /run/synshare/ss-node3.sock
drain_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "drain answers at once with 20 idle metrics connections open ($drain_ms ms, $(cat "$SS_TMP/idle.out"))" \
  test "$(cat "$SS_TMP/idle.out")" = held -a "$drain_ms" -lt 2000
kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null
check "a draining node lets all its buckets go" $X wait-held-zero 3 5
client python3 "$ROOT/tests/client.py" --host 192.0.2.100 --count 600 --parallel 8 > "$SS_TMP/d.json"
n3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"].get("node3", 0))' "$SS_TMP/d.json")
ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$SS_TMP/d.json")
check "while draining it takes no new connection ($n3 of $ok), the others take them all" test "$n3" -eq 0 -a "$ok" -eq 600
"$BIN" undrain --socket /run/synshare/ss-node3.sock
check "undrained, it takes its share again" $X wait-held 3 3 20000 5

# --- reload (SIGHUP) ----------------------------------------------------------------
# node2's file edited: capacity, the health check (HTTP, rise/fall), the
# metrics port and the log level are applied; the flow table's capacity
# and the buckets need a restart and are named in a warning; the node
# keeps serving.
cp "$STATE/node2.ron" "$SS_TMP/node2.ron.orig"
python3 - "$STATE/node2.ron" <<'PY'
import sys
p = sys.argv[1]; t = open(p).read()
for a, b in [("capacity: 2.0,", "capacity: 5.0,"),
             ('service_probe: Some("127.0.0.1:80"),', 'health_check: (probe: http(addr: "127.0.0.1:80", path: "/", status: 200), rise: 2, fall: 3),'),
             ('metrics: Some("127.0.0.1:9746"),', 'metrics: Some("127.0.0.1:9747"),\n    log_level: "debug",'),
             ("buckets: 65536,", "buckets: 4096,")]:
    assert t.count(a) == 1, a
    t = t.replace(a, b)
t = t.replace("flow_table: (capacity: 65536)", "flow_table: (capacity: 131072)", 1)
open(p, "w").write(t)
PY
: > "$SS_TMP/before.log"; cp "$STATE/node2.log" "$SS_TMP/before.log"
kill -HUP "$(cat "$STATE/node2.pid")"
sleep 1.5
tail -n +$(($(wc -l <"$SS_TMP/before.log") + 1)) "$STATE/node2.log" > "$SS_TMP/reload.log"
grep -E "reload|restart" "$SS_TMP/reload.log" | sed 's/^/    /' | cut -c1-300
check "SIGHUP applies capacity, health check, metrics and log level" \
  grep -q 'edited=\["availability.capacity", "availability.health_check", "availability.service_probe", "log_level", "metrics"\]' "$SS_TMP/reload.log"
check "and warns naming each edited field that needs a restart" \
  grep -E 'WARN.*need a restart, not applied: flow_table.capacity, sharing.buckets \(systemctl restart' "$SS_TMP/reload.log"
cap=$(node_json 2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["availability"]["capacity"])')
check "the new capacity is in force ($cap)" python3 -c "import sys; sys.exit(0 if abs($cap - 5.0) < 1e-9 else 1)"
check "metrics moved to 127.0.0.1:9747, 9746 is closed" bash -c \
  'ip netns exec ss-node2 curl -s -m3 http://127.0.0.1:9747/metrics | grep -q "^synshare_held_buckets{" && ! ip netns exec ss-node2 curl -s -m3 http://127.0.0.1:9746/metrics >/dev/null'
check "debug lines follow (log_level)" grep -q DEBUG "$SS_TMP/reload.log"
check "the service stays up under the HTTP health check" bash -c \
  "sleep 1; [ \"\$(ip netns exec ss-node2 curl -s -m3 http://127.0.0.1:9747/metrics | grep '^synshare_service_up{' | awk '{print \$2}')\" = 1.0 ]"

# --- the health check: the service stops, the node gives its share up --------------
# node2 now checks GET / with rise 2 and fall 3 every 250 ms.
kill "$(cat "$STATE/httpd2.pid")"
t0=$(date +%s%N)
down=""
for _ in $(seq 40); do
  up=$(node_json 2 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["availability"]["service_up"]))')
  [ "$up" = 0 ] && { down=$(( ($(date +%s%N) - t0) / 1000000 )); break; }
  sleep 0.1
done
check "with its service stopped, the check says down after fall=3 failures (${down:-never} ms)" \
  test -n "$down" -a "${down:-0}" -ge 400
check "and node2 gives its buckets up" $X wait-held-zero 2 10
ip netns exec ss-node2 python3 "$ROOT/scripts/httpd.py" --name node2 --port 80 >"$STATE/httpd2.log" 2>&1 &
echo $! > "$STATE/httpd2.pid"
check "its service back, it is up after rise=2 passes and takes buckets again" $X wait-held 3 2 1000 15
cp "$SS_TMP/node2.ron.orig" "$STATE/node2.ron"
finish
