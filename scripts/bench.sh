#!/usr/bin/env bash
# Throughput of synshare's worker loop against dpdk-testpmd (io forwarding)
# on the very same virtual devices, in the same run, alternating:
#
#   wire:   net_pcap0,rx_pcap=FILE,infinite_rx=1   (the pcap replayed from memory)
#   output: net_null0,no-rx=1                      (a sink)
#
# For 64-byte frames and IMIX, with hugepages and with --no-huge, it runs
# testpmd then `synshare-bench bench`, ROUNDS times each, one forwarding
# lcore each (EAL -l 0,1: lcore 1 forwards), with the same mbuf pool (count
# and data room) and prints the Mpps of both and the ratio synshare/testpmd.
#
#   scripts/bench.sh                     # 1M flows, 3 rounds of 5 s, everything
#   scripts/bench.sh --flows 100000 --rounds 1 --duration 2 --sizes 64 --memory huge
#   scripts/bench.sh --members "1 3 8" --sizes 64 --memory huge
#                                        # the node as member 1 of K equal members
#                                        # (its table holds its own share of the
#                                        # flows); one row per K
#   scripts/bench.sh --members "1 3 8" --sizes 64 --memory huge --nic-hash
#                                        # each round also runs synshare as on a NIC
#                                        # with RSS and IPv4 checksum offload (each
#                                        # mbuf stamped with the frame's Toeplitz
#                                        # hash and checksum-good flag on receive):
#                                        # its own rows, mode nic-hash
#   scripts/bench.sh --sweep             # Mpps against flows (64 B, hugepages) and
#                                        # memory at 1M/10M flows; writes the plot
#
# Options: --flows N, --rounds R, --duration S (measured seconds per run),
# --sizes "64 imix", --memory "huge nohuge", --members "1 3 8" (default 1:
# the node owns every bucket), --nic-hash, --out DIR (pcaps and results,
# default /tmp/synshare-bench), --no-build, --sweep, --plot FILE.png (with --sweep;
# default docs/bench-flows.png). It builds and runs
# target/release/synshare-bench (SS_BENCH_BIN=PATH runs another build).
#
# Every run is bounded: a testpmd run is stopped (SIGINT) once it has printed
# enough per-second samples, or killed after a deadline.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${SS_BENCH_BIN:-$ROOT/target/release/synshare-bench}

FLOWS=1000000
ROUNDS=3
DURATION=5
SIZES="64 imix"
MEMORY="huge nohuge"
MEMBERS=1
NIC_HASH=0
OUT=${SS_BENCH_DIR:-/tmp/synshare-bench}
BUILD=1
SWEEP=0
PLOT=$ROOT/docs/bench-flows.png
while [ $# -gt 0 ]; do
  case $1 in
    --flows) FLOWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    --nic-hash) NIC_HASH=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --sweep) SWEEP=1; shift ;;
    --plot) PLOT=$2; shift 2 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v dpdk-testpmd >/dev/null || { echo "bench.sh: dpdk-testpmd not found (scripts/setup.sh installs DPDK)" >&2; exit 1; }
if [ $BUILD -eq 1 ]; then cargo build --release --quiet -p synshare-bench || exit 1; fi
[ -x "$BIN" ] || { echo "bench.sh: $BIN missing" >&2; exit 1; }
mkdir -p "$OUT"

# pcap FLOWS SIZE: the file's path, generated once.
pcap() {
  local f="$OUT/flows$1-$2.pcap"
  if [ ! -s "$f" ]; then
    "$BIN" pktgen --out "$f.tmp" --flows "$1" --size "$2" >&2 && mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# json FIELD...: reads one JSON object on stdin, prints the fields.
json() { python3 -c '
import json, sys
d = json.load(sys.stdin)
out = []
for path in sys.argv[1:]:
    v = d
    for k in path.split("."):
        v = v[k]
    out.append(str(v))
print(" ".join(out))' "$@"; }

# testpmd PCAP MEM: prints the mean Rx-pps (Mpps) of the pcap port over
# DURATION one-second samples, after dropping the first (partial) one.
testpmd_mpps() {
  local pcap=$1 mem=$2 plan mbufs room mb log pid deadline samples
  plan=$("$BIN" bench --pcap "$pcap" --plan) || return 1
  read -r mbufs room mb <<<"$(echo "$plan" | json mbufs data_room memory_mb)"
  local eal=(-l 0,1 --file-prefix "ss-tpmd-$$" --no-pci --log-level lib.eal:error
    --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev "net_null0,no-rx=1")
  if [ "$mem" = huge ]; then eal+=(--in-memory); else eal+=(--no-huge -m "$mb"); fi
  log=$(mktemp)
  dpdk-testpmd "${eal[@]}" -- --forward-mode=io --auto-start --stats-period 1 \
    --nb-cores=1 --total-num-mbufs="$mbufs" --mbuf-size="$room" >"$log" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + DURATION + 60))
  while kill -0 $pid 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    samples=$(awk '/Rx-pps:/ && $2 > 0' "$log" | wc -l)
    [ "$samples" -ge $((DURATION + 1)) ] && break
    sleep 0.5
  done
  kill -INT $pid 2>/dev/null
  for _ in $(seq 20); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  awk -v n="$DURATION" '/Rx-pps:/ && $2 > 0 { k++; if (k > 1 && k <= n + 1) { s += $2; m++ } }
    END { if (m) printf "%.3f\n", s / m / 1e6; else print "nan" }' "$log"
  if ! grep -q 'Rx-pps' "$log"; then echo "bench.sh: testpmd failed; its log:" >&2; tail -20 "$log" >&2; fi
  rm -f "$log"
}

# synshare PCAP MEM [bench options...]: prints the bench's JSON report.
synshare_json() {
  local pcap=$1 mem=$2; shift 2
  local extra=()
  [ "$mem" = nohuge ] && extra+=(--no-huge)
  timeout $((DURATION + 120)) "$BIN" bench --pcap "$pcap" --duration "$DURATION" --warmup 1 \
    --file-prefix "ss-bench-$$" --json "${extra[@]}" "$@" </dev/null 2>/dev/null | grep '^{' | tail -1
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [ $SWEEP -eq 1 ]; then
  # Mpps against the number of flows, 64-byte frames, hugepages. Up to 1M
  # flows the file holds every flow; beyond, the file's 1M flows carry the
  # traffic and the table is filled with flows the traffic never touches.
  tsv="$OUT/sweep.tsv"
  echo -e "table_flows\tpcap_flows\ttestpmd_mpps\tsynshare_mpps\tcycles_per_packet\tbytes_per_slot\tbytes_per_flow\trss_mib\thugetlb_mib" >"$tsv"
  for point in 1000:1000:0 10000:10000:0 100000:100000:0 1000000:1000000:0 1000000:4000000:3000000 1000000:10000000:9000000; do
    IFS=: read -r pf tf extra <<<"$point"
    f=$(pcap "$pf" 64)
    tp=$(testpmd_mpps "$f" huge)
    j=$(synshare_json "$f" huge --extra-flows "$extra")
    read -r mpps cpp bps bpf rss huge <<<"$(echo "$j" | json mpps cycles_per_packet flow_table.bytes_per_slot flow_table.bytes_per_flow rss_kib.running hugetlb_kib.running)"
    printf "%s\t%s\t%s\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n" "$tf" "$pf" "$tp" "$mpps" "$cpp" "$bps" "$bpf" \
      "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$huge" 'BEGIN { print k / 1024 }')" | tee -a "$tsv"
  done
  column -t "$tsv"
  python3 "$ROOT/scripts/plot_bench.py" "$tsv" "$PLOT" && echo "bench.sh: plot written to $PLOT"
  exit 0
fi

for k in $MEMBERS; do
  case $k in '' | *[!0-9]*) echo "bench.sh: --members takes numbers (\"1 3 8\")" >&2; exit 2 ;; esac
done
MODES=plain
[ $NIC_HASH -eq 1 ] && MODES="plain nic-hash"
results="$OUT/compare.tsv"
echo -e "memory\tsize\tmembers\tmode\tround\ttestpmd_mpps\tsynshare_mpps\tratio\tcycles_per_packet\tp50_ns\tp99_ns\tp999_ns\tloadavg" >"$results"
echo "bench.sh: $FLOWS flows, $ROUNDS round(s) of $DURATION s per tool, sizes: $SIZES, memory: $MEMORY, members: $MEMBERS"
for mem in $MEMORY; do
  for size in $SIZES; do
    f=$(pcap "$FLOWS" "$size")
    for k in $MEMBERS; do
      for r in $(seq "$ROUNDS"); do
        tp=$(testpmd_mpps "$f" "$mem")
        for mode in $MODES; do
          opt=()
          [ "$mode" = nic-hash ] && opt=(--nic-hash)
          j=$(synshare_json "$f" "$mem" --members "$k" "${opt[@]}")
          if [ -z "$j" ]; then echo "bench.sh: synshare-bench bench failed ($mem, $size, $k members, $mode)" >&2; ss=nan; cpp=nan; p50=nan; p99=nan; p999=nan
          else read -r ss cpp p50 p99 p999 <<<"$(echo "$j" | json mpps cycles_per_packet burst_latency_ns.p50 burst_latency_ns.p99 burst_latency_ns.p999 2>/dev/null || echo nan nan nan nan nan)"; fi
          ratio=$(awk -v a="$ss" -v b="$tp" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%s\t%.1f\t%.0f\t%.0f\t%.0f\t%s\n" "$mem" "$size" "$k" "$mode" "$r" "$tp" "$ss" "$ratio" "$cpp" \
            "$p50" "$p99" "$p999" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results"
        done
      done
    done
  done
done
echo
echo "bench.sh: medians over $ROUNDS round(s), $FLOWS flows (Mpps per forwarding core;"
echo "          ratio: the median of each round's synshare/testpmd, the two run back to back;"
echo "          members K: the node is member 1 of K equal members;"
echo "          mode nic-hash: each mbuf carries the NIC's RSS hash and checksum flag)"
printf "%-8s %-6s %7s %-8s %12s %14s %8s %12s\n" memory size members mode testpmd synshare ratio cycles/pkt
col() { awk -v m="$1" -v s="$2" -v k="$3" -v d="$4" -v c="$5" '$1 == m && $2 == s && $3 == k && $4 == d { print $c }' "$results" | median; }
for mem in $MEMORY; do
  for size in $SIZES; do
    for k in $MEMBERS; do
      for mode in $MODES; do
        printf "%-8s %-6s %7s %-8s %12s %14s %8s %12s\n" "$mem" "$size" "$k" "$mode" "$(col "$mem" "$size" "$k" "$mode" 6)" \
          "$(col "$mem" "$size" "$k" "$mode" 7)" "$(col "$mem" "$size" "$k" "$mode" 8)" "$(col "$mem" "$size" "$k" "$mode" 9)"
      done
    done
  done
done
echo "bench.sh: per-round figures in $results"
