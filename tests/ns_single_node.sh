#!/usr/bin/env bash
# One real synshare node between a wire veth and its kernel: pings, 200 GETs
# over IPv4 and over IPv6 to the VIP, a 10 MB download, and counters that
# show every packet crossed the DPDK dataplane.
source "$(dirname "$0")/lib.sh"

echo "== $TEST_NAME"
"$CLUSTER" up --nodes 1 || { fail "cluster up"; finish; exit 1; }

check "ping node address 192.0.2.21" client ping -c3 -i0.2 -W2 192.0.2.21
check "ping node address 2001:db8::21" client ping -c3 -i0.2 -W2 2001:db8::21
check "ping VIP 192.0.2.100" client ping -c3 -i0.2 -W2 192.0.2.100
check "ping VIP 2001:db8::100" client ping -c3 -i0.2 -W2 2001:db8::100

mac=$(client ip neigh show 192.0.2.100 | awk '{print $5}')
check "the VIP resolves to the cluster MAC ($mac)" test "$mac" = 02:5e:00:00:01:00
mac6=$(client ip -6 neigh show 2001:db8::100 | awk '{print $5}')
check "the IPv6 VIP resolves to the cluster MAC ($mac6)" test "$mac6" = 02:5e:00:00:01:00

client_tx0=$(client cat /sys/class/net/eth0/statistics/tx_packets)
client_rx0=$(client cat /sys/class/net/eth0/statistics/rx_packets)
wire0=$(node_json 1 | python3 -c 'import json,sys; s=json.load(sys.stdin)["wire"]; print(s["ipackets"], s["opackets"])')

for family in 4 6; do
  url=http://192.0.2.100/; [ $family = 6 ] && url='http://[2001:db8::100]/'
  ok=0
  for _ in $(seq 200); do
    body=$(client curl -s -m5 "$url" | head -1)
    [ "$body" = node1 ] && ok=$((ok + 1))
  done
  check "200 GETs over IPv$family all answered by node1 ($ok/200)" test "$ok" -eq 200
done

expected=$(python3 -c "
import hashlib, sys
sys.path.insert(0, '$ROOT/scripts')
from httpd import pattern
print(hashlib.sha256(pattern(10_000_000)).hexdigest())")
got=$(client curl -s -m60 'http://192.0.2.100/big?n=10000000' | sha256sum | cut -d' ' -f1)
check "10 MB download intact over IPv4" test "$got" = "$expected"
got6=$(client curl -s -m60 'http://[2001:db8::100]/big?n=10000000' | sha256sum | cut -d' ' -f1)
check "10 MB download intact over IPv6" test "$got6" = "$expected"

sleep 0.5
read -r wire_rx0 wire_tx0 <<<"$wire0"
read -r wire_rx1 wire_tx1 <<<"$(node_json 1 | python3 -c 'import json,sys; s=json.load(sys.stdin)["wire"]; print(s["ipackets"], s["opackets"])')"
client_tx1=$(client cat /sys/class/net/eth0/statistics/tx_packets)
client_rx1=$(client cat /sys/class/net/eth0/statistics/rx_packets)
sent=$((client_tx1 - client_tx0)); seen=$((wire_rx1 - wire_rx0))
back=$((wire_tx1 - wire_tx0)); got_back=$((client_rx1 - client_rx0))
echo "  client sent $sent frames, the node's DPDK wire port received $seen; it sent $back, the client received $got_back"
check "the test moved real traffic ($sent frames from the client)" test "$sent" -gt 3000
check "every client frame crossed the dataplane (sent $sent, DPDK rx $seen)" near "$sent" "$seen" 10
check "every frame to the client came from the dataplane (DPDK tx $back, client rx $got_back)" near "$back" "$got_back" 10

read -r outcomes worker_rx port_rx <<<"$(frame_accounting 1)"
check "each frame from the wire has one outcome ($outcomes outcomes, $worker_rx received, port $port_rx)" test "$outcomes" -eq "$worker_rx" -a "$worker_rx" -eq "$port_rx"
syn=$(counter 1 kernel_vip_syn)
check "SYNs went up through the dataplane ($syn >= 402)" test "$syn" -ge 402
"$BIN" status --socket /run/synshare/ss-node1.sock | sed 's/^/    /'

finish
