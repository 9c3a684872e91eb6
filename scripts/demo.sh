#!/usr/bin/env bash
# The main job: a synshare cluster in network namespaces serving real
# connections. Sets the machine up, starts three nodes with weights 1, 2, 3,
# drives real HTTP connections from the client to the shared VIP over IPv4
# and IPv6, prints who served them and the nodes' own counters, tears down.
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
trap 'scripts/cluster.sh down' EXIT
scripts/cluster.sh up --nodes "$nodes" --weights "$weights"

echo
echo "== $conns new HTTP connections to http://192.0.2.100/ and $((conns / 3)) to http://[2001:db8::100]/"
tally=$(mktemp)
for i in $(seq "$conns"); do
  ip netns exec ss-client curl -s -m5 http://192.0.2.100/ | head -1 >> "$tally" || echo "failed" >> "$tally" &
  [ $((i % 8)) -eq 0 ] && wait
done
for i in $(seq $((conns / 3))); do
  ip netns exec ss-client curl -s -m5 'http://[2001:db8::100]/' | head -1 >> "$tally" || echo "failed" >> "$tally" &
  [ $((i % 8)) -eq 0 ] && wait
done
wait
echo "served by (configured weights $weights):"
sort "$tally" | uniq -c | sort -k2 | awk -v total="$((conns + conns / 3))" \
  '{ printf "  %-8s %5d connections  %5.1f%%\n", ($2 == "" ? "none" : $2), $1, 100 * $1 / total }'
rm -f "$tally"

echo
echo "== the nodes' own view (synshare status)"
scripts/cluster.sh status
