#!/usr/bin/env bash
# Hostile traffic through the real dataplane: two nodes (static shares), a
# stream of legitimate connections, and crafted raw frames from the client
# (tests/hostile.py: truncated and malformed Ethernet/IPv4/IPv6/TCP/UDP
# headers, bad lengths and checksums, IPv6 extension-header chains,
# fragments, odd TCP flags, junk ARP and NDP, ARP claiming the VIP at another
# MAC, the cluster MAC as source). Checks: every node stays up and counts
# every frame of each case under the drop reason the classifier gives it
# (exactly: each node counts each frame once, or, where only the bucket's
# owner decides, the nodes together do); nothing answers wrong (the client
# still resolves the VIPs to the cluster MAC); every legitimate connection
# succeeds throughout.
#
# Fragments to a VIP, first, later and IPv6 atomic ones alike, are dropped
# and counted in drop_vip_fragment: later fragments carry no ports, so no
# node could place them consistently (see README, "How a frame is decided").
# In this topology the node's kernel reassembles IPv4 fragments before the
# dataplane sees them (DPDK's net_af_packet joins a PACKET_FANOUT group with
# PACKET_FANOUT_FLAG_DEFRAG): lone IPv4 fragments never reach the dataplane
# and are not counted, a complete fragmented IPv4 datagram arrives whole.
# IPv6 fragments reach it and are counted; with a NIC, IPv4 ones are too.
#
# The same cases decided offline, by one classifier from committed pcap
# fixtures (no root, milliseconds): dataplane/tests/hostile_fixtures.rs.
source "$(dirname "$0")/lib.sh"
H="python3 $ROOT/tests/hostile.py"
COUNT=${SS_HOSTILE_COUNT:-20}
CLUSTER_MAC=02:5e:00:00:01:00

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 2 || { fail "cluster up"; finish; exit 1; }
# The switch forwards what it is given, as an L2 switch does: no IP header
# checks by the bridge's netfilter hooks (they would drop the malformed
# IPv4/IPv6 frames before the nodes see them).
ip netns exec ss-switch sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
  net.bridge.bridge-nf-call-arptables=0 >/dev/null 2>&1 || true
pids=()
for i in 1 2; do pids+=("$(cat "$STATE/node$i.pid")"); done

client python3 "$ROOT/tests/stream.py" --host 192.0.2.100 --seconds 28 --parallel 2 --out "$SS_TMP/stream.jsonl" &
stream_pid=$!
sleep 1

client $H cases --nodes 2 --count "$COUNT" --skip source_mac_is_cluster_mac > "$SS_TMP/cases.jsonl"
# A frame with the cluster MAC as source teaches a learning switch that the
# cluster MAC sits on the sender's port: the switch would then forward the
# VIP's traffic there only, until the entry ages out. No node can prevent
# that; it is the switch's job (port security: no learning of the cluster
# MAC). Here the client's switch port stops learning while these frames go
# through, so the nodes see them and the stream keeps working.
ip netns exec ss-switch bridge link set dev ss-c-br learning off
client $H cases --nodes 2 --count "$COUNT" --only source_mac_is_cluster_mac >> "$SS_TMP/cases.jsonl"
learned=$(ip netns exec ss-switch bridge fdb show br br0 | grep -ci "$CLUSTER_MAC")
ip netns exec ss-switch bridge link set dev ss-c-br learning on
check "the switch never learned the cluster MAC ($learned entries)" test "$learned" -eq 0

ncases=0
while read -r name counter mode sent frames deltas ok; do
  ncases=$((ncases + 1))
  case $mode in
    each) what="each node +$deltas" ;;
    sum) what="the nodes together +$deltas (one per frame)" ;;
    absent) what="+$deltas: never reaches the dataplane (reassembled by af_packet)" ;;
  esac
  unit="$sent frames"; [ "$frames" != "$sent" ] && unit="$sent datagrams in $frames frames"
  check "$name: $unit, $counter $what" test "$ok" = 1
done < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["deltas"]
    if r["mode"] == "each":
        ok = all(x == r["sent"] for x in d)
    elif r["mode"] == "sum":
        ok = sum(d) == r["sent"]
    else:
        ok = all(x == 0 for x in d)
    print(r["case"], r["counter"], r["mode"], r["sent"], r["frames"], "/".join(map(str, d)), int(ok))' "$SS_TMP/cases.jsonl")
check "all hostile cases ran ($ncases)" test "$ncases" -ge 40

for i in 1 2; do
  check "node$i (pid ${pids[$((i - 1))]}) is still running" kill -0 "${pids[$((i - 1))]}"
  check "node$i answers status" node_json "$i"
  check "node$i logged no panic" bash -c "! grep -qi panick '$STATE/node$i.log'"
done

# Nothing answered wrong: the client's neighbour entries for the VIPs still
# name the cluster MAC, and so do fresh resolutions.
mac=$(client ip neigh show 192.0.2.100 dev eth0 | awk '{print $3}')
check "the client's ARP entry for the VIP is still the cluster MAC ($mac)" test "$mac" = "$CLUSTER_MAC"
client ip neigh del 192.0.2.100 dev eth0 2>/dev/null
client ping -c1 -W2 192.0.2.100 >/dev/null 2>&1
mac=$(client ip neigh show 192.0.2.100 dev eth0 | awk '{print $3}')
check "a fresh ARP resolution of the VIP gives the cluster MAC ($mac)" test "$mac" = "$CLUSTER_MAC"
client ip -6 neigh del 2001:db8::100 dev eth0 2>/dev/null
client ping -6 -c1 -W2 2001:db8::100 >/dev/null 2>&1
mac6=$(client ip -6 neigh show 2001:db8::100 dev eth0 | awk '{print $3}')
check "a fresh neighbour resolution of the IPv6 VIP gives the cluster MAC ($mac6)" test "$mac6" = "$CLUSTER_MAC"

wait "$stream_pid"
read -r total okc failed <<<"$(python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
ok = sum(r["status"] == "ok" for r in rs)
print(len(rs), ok, len(rs) - ok)' "$SS_TMP/stream.jsonl")"
check "legitimate connections all succeeded during the hostile traffic ($okc of $total, $failed failed)" \
  test "$failed" -eq 0 -a "$total" -gt 50

sleep 0.3
for i in 1 2; do
  read -r outcomes worker_rx port_rx <<<"$(frame_accounting $i)"
  check "node$i gave every frame it saw one outcome ($outcomes outcomes, $worker_rx received, port $port_rx)" \
    test "$outcomes" -eq "$worker_rx" -a "$worker_rx" -eq "$port_rx"
done
echo "    drop counters per node:"
for i in 1 2; do
  node_json "$i" | python3 -c '
import json, sys
s = json.load(sys.stdin)
c = {}
for w in s["workers"]:
    for k, v in w["counters"].items():
        c[k] = c.get(k, 0) + v
print("      node%s: " % sys.argv[1] + ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k.startswith("drop_")))' "$i"
done

finish
