#!/usr/bin/env bash
# The Debian package: it builds; its Depends resolve from the archive in an
# apt state where DPDK is not installed (apt-get --simulate against a dpkg
# status without DPDK's packages: this host has DPDK, so the real install
# below cannot show that); it installs with apt and creates /etc/synshare;
# `synshare keygen` writes a private key file; the unit's ExecStart (run as
# written, systemd being offline here) refuses a bad configuration with
# exit 78 and starts a node in a test namespace that reaches READY on a
# NOTIFY_SOCKET this test listens on, then serves the VIP. The DPDK plugins
# that node loaded are mapped to their packages (dpkg -S), and the ones it
# needs must be in the package's Depends. Then README's "Bare metal"
# section is followed step by step on three nodes of the test cluster (the
# wire a veth under net_af_packet instead of a NIC under vfio-pci), ending
# with one node killed and the other serving everything. The package is
# removed afterwards.
source "$(dirname "$0")/lib.sh"
echo "== $TEST_NAME"
NAME=ss-pkg-node1
UNIT=/lib/systemd/system/synshare@.service
NOTIFY=$SS_TMP/notify.sock
pkg_cleanup() {
  [ -n "${npid:-}" ] && kill -INT "$npid" 2>/dev/null && sleep 1
  [ -n "${npid:-}" ] && kill -KILL "$npid" 2>/dev/null
  for p in ${bm_pids:-}; do kill -KILL "$p" 2>/dev/null; done
  rm -f "/etc/synshare/$NAME.ron" /etc/synshare/ss-bm-node1.ron /etc/synshare/ss-bm-node2.ron
  dpkg -s synshare >/dev/null 2>&1 && apt-get remove -y -qq synshare >/dev/null 2>&1
  cleanup
  rm -rf "$SS_TMP"
}
trap pkg_cleanup EXIT

deb=$(cd "$ROOT" && realpath "$(scripts/package.sh 2>"$SS_TMP/package.log" | tail -1)")
check "the package builds ($(basename "${deb:-none}"))" test -f "$deb"
[ -f "$deb" ] || { tail -5 "$SS_TMP/package.log"; finish; exit 1; }
depends=$(dpkg-deb -f "$deb" Depends)
echo "    Depends: $depends"
in_depends() { tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/[ (].*//' | grep -qx "$1"; }
check "it depends on dpdk (dpdk-devbind)" in_depends dpdk

# A clean apt state: the installed packages less DPDK's (and what depends
# on them), so apt must find DPDK's libraries and plugins in the archive.
python3 - /var/lib/dpkg/status "$SS_TMP/status" <<'PY'
import re, sys
stanzas = open(sys.argv[1]).read().split("\n\n")
def name(s):
    m = re.search(r"^Package: (\S+)", s, re.M)
    return m.group(1) if m else ""
dpdk = lambda n: n.startswith("librte-") or n.startswith("dpdk") or n == "libdpdk-dev"
drop = {name(s) for s in stanzas if dpdk(name(s))}
while True:  # and whatever depends on a dropped package
    more = {name(s) for s in stanzas if name(s) not in drop and any(
        re.search(r"(^|[ ,|])" + re.escape(d) + r"([ ,(:]|$)", l)
        for l in re.findall(r"^(?:Pre-)?Depends: (.*)$", s, re.M) for d in drop)}
    if not more:
        break
    drop |= more
open(sys.argv[2], "w").write("\n\n".join(s for s in stanzas if name(s) not in drop))
print("    the clean apt state leaves out %d installed packages (DPDK and what needs it)" % len(drop))
PY
apt-get -s -o Dir::State::status="$SS_TMP/status" install "$deb" >"$SS_TMP/sim.log" 2>&1
sim=$?
grep -c '^Inst librte-' "$SS_TMP/sim.log" > "$SS_TMP/sim.count"
echo "    apt-get -s without DPDK installed: exit $sim, $(grep -c '^Inst ' "$SS_TMP/sim.log") packages to install, $(cat "$SS_TMP/sim.count") of them librte-*, dpdk: $(grep -c '^Inst dpdk ' "$SS_TMP/sim.log")"
check "its Depends resolve from the archive where DPDK is not installed (apt-get -s, exit $sim)" \
  bash -c "[ $sim -eq 0 ] && grep -q '^Inst synshare ' '$SS_TMP/sim.log' && grep -q '^Inst dpdk ' '$SS_TMP/sim.log' && grep -q '^Inst librte-net-tap23 ' '$SS_TMP/sim.log' && ! grep -qi 'unmet\|broken' '$SS_TMP/sim.log'"
[ "$sim" -eq 0 ] || tail -20 "$SS_TMP/sim.log"

# /etc/synshare is the package's to create (left in place if not empty).
rmdir /etc/synshare 2>/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$SS_TMP/apt.log" 2>&1
check "apt installs it" dpkg -s synshare
check "and /etc/synshare exists" test -d /etc/synshare
check "it ships the units and the binary" bash -c "dpkg -L synshare | grep -q $UNIT && dpkg -L synshare | grep -q synshare-coordinator@.service && test -x /usr/bin/synshare"
check "and the man page and completions" bash -c "dpkg -L synshare | grep -q man1/synshare.1.gz && dpkg -L synshare | grep -q bash-completion/completions/synshare && zcat /usr/share/man/man1/synshare.1.gz | grep -q '^.TH synshare'"
echo "    $(/usr/bin/synshare version)"

# keygen: mode 600, its folder created, never replaced unasked.
key=$SS_TMP/keys/sub/cluster.key
/usr/bin/synshare keygen "$key" >/dev/null
check "keygen writes a key file, mode 600 ($(stat -c %a "$key" 2>/dev/null)), its folder created" \
  bash -c "[ \"\$(stat -c %a '$key')\" = 600 ] && grep -Eq '^1 [0-9a-f]{64}\$' '$key'"
before=$(md5sum <"$key")
/usr/bin/synshare keygen "$key" >/dev/null 2>"$SS_TMP/keygen.err"; kg=$?
check "and refuses to overwrite it without --force (exit $kg: $(head -1 "$SS_TMP/keygen.err"))" \
  bash -c "[ $kg -eq 1 ] && [ \"\$(md5sum <'$key')\" = '$before' ]"
/usr/bin/synshare keygen --force "$key" >/dev/null
check "--force replaces it" bash -c "[ \"\$(md5sum <'$key')\" != '$before' ]"

# The unit's ExecStart with a refused configuration: exit 78 at once
# (RestartPreventExitStatus=78 covers ExecStart, not ExecStartPre).
check "the unit has no ExecStartPre (its exit status would be retried)" bash -c "! grep -q '^ExecStartPre=' $UNIT"
check "and RestartPreventExitStatus=78 65 (a refused configuration, a corrupt state file)" grep -qx 'RestartPreventExitStatus=78 65' "$UNIT"
mkdir -p /etc/synshare
sed 's/workers: 1,/workers: 0,/' /usr/share/doc/synshare/examples/node.ron > "/etc/synshare/$NAME.ron"
start=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s/%i/$NAME/g")
timeout 20 $start >/dev/null 2>"$SS_TMP/refused.err"; rc=$?
check "ExecStart refuses a bad configuration with exit 78 (got $rc: $(grep -m1 'field' "$SS_TMP/refused.err"))" \
  bash -c "[ $rc -eq 78 ] && grep -q 'field \`workers\`' '$SS_TMP/refused.err'"

# A one-node cluster in namespaces; its node is then run by the unit.
"$CLUSTER" up --nodes 1 >/dev/null 2>&1 || { fail "cluster up"; finish; exit 1; }
"$CLUSTER" stop-node 1 >/dev/null 2>&1
mkdir -p /etc/synshare
cp "$STATE/node1.ron" "/etc/synshare/$NAME.ron"
check "check-config passes on the node's file" /usr/bin/synshare check-config "/etc/synshare/$NAME.ron"
python3 - "$NOTIFY" >"$SS_TMP/notify.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
end = time.time() + 30
while time.time() < end:
    msg = s.recv(4096).decode()
    print(msg.replace("\n", " "), flush=True)
    if "READY=1" in msg:
        break
PY
lpid=$!
sleep 0.3
t0=$(date +%s.%N)
nsenter --net=/var/run/netns/ss-node1 env NOTIFY_SOCKET="$NOTIFY" $start >"$SS_TMP/unit.log" 2>&1 &
npid=$!
wait "$lpid"
ready_ms=$(python3 -c "import time; print(int((time.time() - $t0) * 1000))")
echo "    notifications: $(cat "$SS_TMP/notify.out" | tr '\n' ' ') (after $ready_ms ms)"
check "the node reaches READY on the NOTIFY_SOCKET ($ready_ms ms)" grep -q "READY=1" "$SS_TMP/notify.out"
code=$(client curl -s -m5 -o /dev/null -w '%{http_code}' http://192.0.2.100/)
check "and serves the VIP (HTTP $code) with the TAP it set up itself" test "$code" = 200

# The DPDK plugins EAL loaded into this node (its memory map), each mapped
# to its package; the ones the node needs must be in Depends: the drivers
# of its own ports (from its status), the ring mempool, the vdev and PCI
# buses, and the NIC drivers of common server NICs.
PMDS=$(ls -d "$(pkg-config --variable=libdir libdpdk 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)"/dpdk/pmds-* 2>/dev/null | head -1)
grep -o "$PMDS/librte_[a-z0-9_]*\.so[.0-9]*" "/proc/$npid/maps" | sort -u > "$SS_TMP/plugins"
drivers=$(/usr/bin/synshare status --config "/etc/synshare/$NAME.ron" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(" ".join(sorted({s["wire"]["driver"], s["exception"]["driver"]})))')
echo "    EAL loaded $(wc -l <"$SS_TMP/plugins") plugins from $PMDS; the ports' drivers: $drivers"
missing=""
for d in $drivers mempool_ring bus_vdev bus_pci net_e1000 net_ixgbe net_i40e net_ice net_mlx5 net_bnxt net_virtio net_vmxnet3; do
  so=$(grep -m1 "/librte_${d#net_}\.so\|/librte_${d}\.so" "$SS_TMP/plugins")
  if [ -z "$so" ]; then missing+=" $d(not loaded)"; continue; fi
  pkg=$(dpkg -S "$so" 2>/dev/null | head -1 | cut -d: -f1)
  printf '    %-14s %-60s %s\n' "$d" "$(basename "$so")" "${pkg:-?}"
  in_depends "$pkg" || missing+=" $d($pkg)"
done
check "every plugin the node needs is loaded and its package is in Depends${missing:+ (missing:$missing)}" test -z "$missing"

kill -INT "$npid"; wait "$npid" 2>/dev/null; npid=""

# ---- README's "Bare metal", step by step, on three nodes ----
# The commands run here are the README's (checked to be there, so the two
# cannot drift apart), with these substitutions for a machine without a
# DPDK NIC: the wire port is the node namespace's veth "wire" under
# net_af_packet (step 2's vfio-pci binding and reboot do not apply; step 0's
# management NIC is the host's own), the key is written to a test folder
# and handed over as systemd would (CREDENTIALS_DIRECTORY), and the unit's
# ExecStart and ExecStartPost run as written in the node's namespace.
readme() { grep -qF -- "$1" "$ROOT/README.md"; }
bm_section=$(sed -n '/^## Bare metal/,/^## Installing/p' "$ROOT/README.md")
"$CLUSTER" down >/dev/null 2>&1
"$CLUSTER" up --nodes 3 --mode peer >/dev/null 2>&1 || { fail "bare metal: cluster up"; finish; exit 1; }
for i in 1 2 3; do "$CLUSTER" stop-node $i >/dev/null 2>&1; done
sleep 1
# Step 1 is the apt install above; its dpdk-devbind is there.
readme 'dpdk-devbind.py --status-dev net' && r=1 || r=0
check "bare metal 1-2: the package brought dpdk-devbind, which the README runs" \
  bash -c "[ $r = 1 ] && dpdk-devbind.py --status-dev net >/dev/null"
# Step 3: the VIPs on lo, the unit's ExecStart lines as the README writes them.
vip_cmds=$(sed -n 's/^ExecStart=\(\/sbin\/ip .* dev lo\)$/\1/p' <<<"$bm_section")
ok3=1
for i in 1 2 3; do
  while read -r c; do [ -n "$c" ] && { ip netns exec "ss-node$i" $c || ok3=0; }; done <<<"$vip_cmds"
done
check "bare metal 3: the VIPs on lo from the README's unit ($(wc -l <<<"$vip_cmds") commands)" \
  bash -c "[ $ok3 = 1 ] && [ $(wc -l <<<"$vip_cmds") -ge 2 ] && ip netns exec ss-node1 ip -br addr show lo | grep -q 192.0.2.100/32"
# Step 4: one key for the cluster, mode 600, the same on both nodes.
readme 'synshare keygen' || fail "bare metal 4: README names synshare keygen"
mkdir -p "$SS_TMP/cred1" "$SS_TMP/cred2" "$SS_TMP/cred3"
/usr/bin/synshare keygen "$SS_TMP/cred1/cluster.key" >/dev/null
cp -p "$SS_TMP/cred1/cluster.key" "$SS_TMP/cred2/cluster.key"
cp -p "$SS_TMP/cred1/cluster.key" "$SS_TMP/cred3/cluster.key"
check "bare metal 4: keygen's key copied with its mode ($(stat -c %a "$SS_TMP/cred2/cluster.key"))" \
  test "$(stat -c %a "$SS_TMP/cred2/cluster.key")" = 600
# Step 5: the example configuration, copied and edited as an operator does.
readme 'cp /usr/share/doc/synshare/examples/node.ron /etc/synshare/node1.ron' || fail "bare metal 5: README's cp"
peers_of() { local j out=""; for j in 1 2 3; do [ "$j" = "$1" ] || out+="${out:+, }$j: \"192.0.2.2$j:7946\""; done; echo "{$out}"; }
for i in 1 2 3; do
  cp /usr/share/doc/synshare/examples/node.ron "/etc/synshare/ss-bm-node$i.ron"
  sed -i -e "s/name: \"node1\"/name: \"ss-bm-node$i\"/" -e "s/^    id: 1,/    id: $i,/" \
    -e 's/lcores: "2,3"/lcores: "0,1"/' -e 's/main_lcore: Some(2)/main_lcore: Some(0)/' \
    -e 's/memory_mb: 512/memory_mb: 256/' -e "s/file_prefix: \"synshare\"/file_prefix: \"ss-bm-node$i\"/" \
    -e 's/device: "0000:3b:00.0"/device: "net_af_packet0,iface=wire,qpairs=1"/' \
    -e "s|exception: (iface: \"ss-tap\", mac: None)|exception: (iface: \"ss-tap\", mac: None, addresses: [\"192.0.2.2$i/24\", \"2001:db8::2$i/64\"])|" \
    -e 's/capacity: 1048576/capacity: 65536/' \
    -e "s/bind: \"192.0.2.21:7946\"/bind: \"192.0.2.2$i:7946\"/" \
    -e "s/peers: {2: \"192.0.2.22:7946\", 3: \"192.0.2.23:7946\"}/peers: $(peers_of $i)/" \
    -e "s|state_dir: \"/var/lib/synshare\"|state_dir: \"$SS_TMP/state$i\"|" \
    -e "s|status_socket: Some(\"/run/synshare/node1.sock\")|status_socket: Some(\"/run/synshare/ss-bm-node$i.sock\")|" \
    "/etc/synshare/ss-bm-node$i.ron"
done
/usr/bin/synshare check-config /etc/synshare/ss-bm-node1.ron >"$SS_TMP/bm-check.out" 2>&1; rc=$?
check "bare metal 5: check-config passes on the edited example (exit $rc$(grep -m1 -i 'error\|field' "$SS_TMP/bm-check.out" | sed 's/^/: /'))" \
  bash -c "[ $rc -eq 0 ] && /usr/bin/synshare check-config /etc/synshare/ss-bm-node2.ron && /usr/bin/synshare check-config /etc/synshare/ss-bm-node3.ron"
[ $rc -eq 0 ] || cat "$SS_TMP/bm-check.out"
# Steps 6 and 7: the unit's ExecStart, then the README's ExecStartPost route.
route=$(sed -n 's/^ExecStartPost=+\(.*\)$/\1/p' <<<"$bm_section")
bm_pids=""
for i in 1 2 3; do
  start=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s/%i/ss-bm-node$i/g")
  nsenter --net=/var/run/netns/ss-node$i env CREDENTIALS_DIRECTORY="$SS_TMP/cred$i" $start >"$SS_TMP/bm$i.log" 2>&1 &
  bm_pids+=" $!"
done
bm_held() { /usr/bin/synshare status --config "/etc/synshare/ss-bm-node$1.ron" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["held"])' 2>/dev/null || echo 0; }
up=0
for _ in $(seq 100); do
  h1=$(bm_held 1); h2=$(bm_held 2); h3=$(bm_held 3)
  [ "$h1" -gt 0 ] && [ "$h2" -gt 0 ] && [ "$h3" -gt 0 ] && [ $((h1 + h2 + h3)) -eq 65536 ] && { up=1; break; }
  sleep 0.2
done
check "bare metal 7: three nodes up from the unit, sharing the buckets (held $h1 $h2 $h3)" test "$up" = 1
[ "$up" = 1 ] || tail -5 "$SS_TMP/bm1.log" "$SS_TMP/bm2.log" "$SS_TMP/bm3.log"
ok6=1
for i in 1 2 3; do ip netns exec "ss-node$i" $route || ok6=0; done
check "bare metal 6: the README's route through the TAP ($route)" \
  bash -c "[ $ok6 = 1 ] && ip netns exec ss-node1 ip route show default | grep -q 'dev ss-tap'"
/usr/bin/synshare status --config /etc/synshare/ss-bm-node1.ron >"$SS_TMP/bm-status.txt" 2>&1
check "bare metal 7: synshare status --config shows the peer live" grep -qi "peer\|member" "$SS_TMP/bm-status.txt"
served=""
for k in $(seq 20); do served+="$(client curl -s -m3 -o /dev/null -D - "http://192.0.2.100/?k=$k" | awk -F': ' 'tolower($1) == "x-node" { gsub("\r", "", $2); print $2 }') "; done
check "bare metal: the VIP is served by every node ($(tr ' ' '\n' <<<"$served" | grep . | sort | uniq -c | tr -s ' \n' ' '))" \
  bash -c "grep -q node1 <<<'$served' && grep -q node2 <<<'$served' && grep -q node3 <<<'$served' && [ $(wc -w <<<"$served") -eq 20 ]"
# It fails over: node1 killed, the two others hold every bucket (within 3 s,
# the status polled by the CLI) and serve every new connection.
bm1=$(awk '{ print $1 }' <<<"$bm_pids")
{ kill -KILL "$bm1"; wait "$bm1"; } 2>/dev/null
t0=$(date +%s%N)
over=0
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 3000 ]; do
  h2=$(bm_held 2); h3=$(bm_held 3)
  [ $((h2 + h3)) -eq 65536 ] && { over=1; break; }
  sleep 0.05
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "bare metal: node1 killed, node2 and node3 hold every bucket ($h2 + $h3, after $ms ms)" test "$over" = 1
ok=0
for k in $(seq 20); do [ "$(client curl -s -m3 -o /dev/null -w '%{http_code}' "http://192.0.2.100/?after=$k")" = 200 ] && ok=$((ok + 1)); done
check "bare metal: and serves every new connection ($ok of 20)" test "$ok" -eq 20
for p in $bm_pids; do kill -INT "$p" 2>/dev/null; done
for p in $bm_pids; do wait "$p" 2>/dev/null; done
bm_pids=""
finish
