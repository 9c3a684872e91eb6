#!/usr/bin/env bash
# The main job: a synshare cluster in network namespaces serving real
# connections. Sets the machine up, starts three nodes in peer mode with
# capacities 1, 2, 3, drives real HTTP connections from the client to the
# shared VIP over IPv4 and IPv6, shows who served them and the nodes' own
# view, then kills one node with -9 and shows the others take its share
# over, restarts it, and tears everything down.
#
#   scripts/demo.sh [--nodes N] [--weights w1,w2,...] [--connections C]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=3 weights=1,2,3 conns=600
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "usage: $0 [--nodes N] [--weights w1,w2,...] [--connections C]"; exit 2 ;;
  esac
done

scripts/setup.sh
# One test cluster at a time on this machine.
exec 9>/tmp/ss-cluster.lock
flock 9
trap 'scripts/cluster.sh down' EXIT
BIN=target/release/synshare
scripts/cluster.sh up --nodes "$nodes" --weights "$weights" --mode peer --cpu off

burst() {  # burst HOST COUNT
  ip netns exec ss-client python3 tests/client.py --host "$1" --count "$2" --parallel 16
}
show() {  # show JSON-FROM-client.py
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("  %d of %d answered (HTTP 200), %.1f s" % (r["ok"], r["count"], r["seconds"]))
for k, v in sorted(r["nodes"].items()):
    print("  %-8s %5d connections  %5.1f%%" % (k, v, 100 * v / max(r["ok"], 1)))' "$1"
}

echo
echo "== $conns new HTTP connections to http://192.0.2.100/ (capacities $weights)"
show "$(burst 192.0.2.100 "$conns")"
echo "== $((conns / 3)) to http://[2001:db8::100]/"
show "$(burst 2001:db8::100 $((conns / 3)))"

echo
echo "== the nodes' own view (synshare status)"
scripts/cluster.sh status

echo
echo "== kill -9 node$nodes, then new connections"
kill_at=$(date +%s.%N)
scripts/cluster.sh kill-node "$nodes"
ms=$(python3 tests/exchange.py failover "$nodes" "$nodes" 5 "$kill_at")
echo "  the other nodes hold every bucket $ms ms after the kill"
show "$(burst 192.0.2.100 "$conns")"

echo
echo "== node$nodes restarts and takes its share back"
scripts/cluster.sh start-node "$nodes" >/dev/null 2>&1
scripts/cluster.sh wait-converged
show "$(burst 192.0.2.100 "$conns")"
