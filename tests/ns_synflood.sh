#!/usr/bin/env bash
# A bounded SYN flood at the VIP: two nodes (static shares: every bucket
# Settled), six GET /slow downloads and a stream of legitimate connections,
# while tests/hostile.py sends spoofed SYNs to 192.0.2.100:80 from random
# sources in 192.0.2.128/25 (inside the test subnet; nobody has those
# addresses, so the nodes' SYN-ACKs go nowhere) and random ports, up to
# 200,000 SYNs or 20 s: the first 100,000 as fast as Python sends them
# (about 100,000/s here: the flow tables fill up with half-open entries), the
# rest at 5,500/s for the remaining time. Checks: the downloads complete intact (the flow table
# never evicts an established flow: it evicts only half-open entries,
# counted in flow_evicted), the nodes' memory stays bounded (VmRSS plus
# hugepages, before and after: the flow table is allocated once), and at
# least 90% of the legitimate new connections succeed: the kernels answer
# with SYN cookies once their SYN queues fill, and the dataplane passes the
# cookie's ACK up even when the flood pushed the half-open entry out,
# because the bucket is settled.
source "$(dirname "$0")/lib.sh"
H="python3 $ROOT/tests/hostile.py"
SYNS=${SS_FLOOD_SYNS:-200000}
SECONDS_MAX=${SS_FLOOD_SECONDS:-20}
BURST=${SS_FLOOD_BURST:-100000}
RATE=${SS_FLOOD_RATE:-5500}
DOWNLOADS=6
SLOW_S=25
SLOW_BYTES=$((SLOW_S * 10 * 1024))

# mem_kb PID: "VmRSS HugetlbPages" in kB (DPDK's mempools live in hugepages
# when the node runs on them, outside VmRSS).
mem_kb() { awk '/^VmRSS:/ { r = $2 } /^HugetlbPages:/ { h = $2 } END { print (r == "" ? -1 : r), h + 0 }' "/proc/$1/status" 2>/dev/null; }
# flow_figures I: flows capacity insert_failed evicted, summed over workers
flow_figures() {
  node_json "$1" | python3 -c '
import json, sys
w = json.load(sys.stdin)["workers"]
print(*(sum(x[k] for x in w) for k in ("flows", "flow_capacity", "flow_insert_failed", "flow_evicted")))'
}
syncookies() {
  ip netns exec "ss-node$1" nstat -az TcpExtSyncookiesSent TcpExtSyncookiesRecv TcpExtListenDrops 2>/dev/null |
    awk '/^TcpExt/ { printf "%s %s ", $1, $2 }'
}

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 2 || { fail "cluster up"; finish; exit 1; }
pids=()
for i in 1 2; do pids+=("$(cat "$STATE/node$i.pid")"); done

for k in $(seq "$DOWNLOADS"); do
  client curl -s -m60 -D "$SS_TMP/slow$k.h" -o "$SS_TMP/slow$k.out" -w "%{http_code}" \
    "http://192.0.2.100/slow?s=$SLOW_S" > "$SS_TMP/slow$k.code" 2>/dev/null &
  echo $! > "$SS_TMP/slow$k.pid"
done
sleep 1.5
mem0=()
for i in 1 2; do mem0+=("$(mem_kb "${pids[$((i - 1))]}")"); done
syn0=()
for i in 1 2; do syn0+=("$(( $(counter "$i" kernel_vip_syn) + $(counter "$i" kernel_vip_syn_untracked) ))"); done

client python3 "$ROOT/tests/stream.py" --host 192.0.2.100 --seconds "$SECONDS_MAX" --parallel 2 --timeout 8 \
  --out "$SS_TMP/stream.jsonl" &
stream_pid=$!
client $H flood --count "$SYNS" --seconds "$SECONDS_MAX" --burst "$BURST" --rate "$RATE" > "$SS_TMP/flood.json" &
flood_pid=$!
# Sample the flow tables while the flood runs.
peak=(0 0)
while kill -0 "$flood_pid" 2>/dev/null; do
  sleep 2
  for i in 1 2; do
    read -r flows _ <<<"$(flow_figures "$i")"
    [ "${flows:-0}" -gt "${peak[$((i - 1))]}" ] && peak[$((i - 1))]=$flows
  done
done
wait "$flood_pid"
read -r sent secs rate burst burst_s <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["sent"], r["seconds"], r["rate"], r["burst"], r["burst_seconds"])' "$SS_TMP/flood.json")"
echo "    flood: $sent spoofed SYNs in $secs s ($rate/s on average; the first $burst in $burst_s s)"
wait "$stream_pid"

accepted=0
for i in 1 2; do
  read -r flows cap failed evicted <<<"$(flow_figures "$i")"
  syn1=$(( $(counter "$i" kernel_vip_syn) + $(counter "$i" kernel_vip_syn_untracked) ))
  got=$((syn1 - ${syn0[$((i - 1))]})); accepted=$((accepted + got))
  echo "    node$i: accepted $got SYNs; flow table peak $((${peak[$((i - 1))]})) of $cap ($((100 * ${peak[$((i - 1))]} / cap))%), now $flows;" \
    "flow_insert_failed $failed, flow_evicted $evicted (half-open); untracked $(counter "$i" kernel_vip_syn_untracked)," \
    "adopted $(counter "$i" kernel_vip_adopted); kernel: $(syncookies "$i")"
done
check "the flood reached the nodes ($accepted SYNs accepted for $sent sent)" test "$accepted" -ge $((sent / 2)) -a "$sent" -gt 0

read -r total okc failed <<<"$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
ok = sum(r["status"] == "ok" for r in rs)
print(len(rs), ok, len(rs) - ok)' "$SS_TMP/stream.jsonl")"
pct=$(( total > 0 ? 100 * okc / total : 0 ))
check "legitimate new connections during the flood: $okc of $total succeeded ($pct% >= 90%)" \
  test "$total" -gt 20 -a "$pct" -ge 90

for k in $(seq "$DOWNLOADS"); do wait "$(cat "$SS_TMP/slow$k.pid")" 2>/dev/null; done
intact=0; nodes=""
for k in $(seq "$DOWNLOADS"); do
  size=$(stat -c %s "$SS_TMP/slow$k.out" 2>/dev/null || echo 0)
  code=$(cat "$SS_TMP/slow$k.code" 2>/dev/null)
  node=$(awk -F': ' 'tolower($1) == "x-node" { gsub("\r", "", $2); print $2 }' "$SS_TMP/slow$k.h" 2>/dev/null)
  nodes+="${node:-?} "
  [ "$size" -eq "$SLOW_BYTES" ] && [ "$code" = 200 ] && intact=$((intact + 1))
done
check "all $DOWNLOADS GET /slow downloads survived the flood intact ($intact of $DOWNLOADS, $SLOW_BYTES bytes each, from: ${nodes% })" \
  test "$intact" -eq "$DOWNLOADS"

for i in 1 2; do
  pid=${pids[$((i - 1))]}
  check "node$i (pid $pid) is still running" kill -0 "$pid"
  read -r r0 h0 <<<"${mem0[$((i - 1))]}"
  read -r r1 h1 <<<"$(mem_kb "$pid")"
  grew=$(( (r1 + h1) - (r0 + h0) ))
  check "node$i memory stays bounded (VmRSS $r0 -> $r1 kB, hugepages $h0 -> $h1 kB: +$((grew / 1024)) MB < 20 MB)" \
    test "${r1:--1}" -gt 0 -a "$grew" -lt 20480
done

finish
