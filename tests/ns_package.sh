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
# needs must be in the package's Depends. The package is removed afterwards.
source "$(dirname "$0")/lib.sh"
STATE=${SS_STATE:-/tmp/ss-cluster}
echo "== $TEST_NAME"
NAME=ss-pkg-node1
UNIT=/lib/systemd/system/synshare@.service
NOTIFY=$SS_TMP/notify.sock
pkg_cleanup() {
  [ -n "${npid:-}" ] && kill -INT "$npid" 2>/dev/null && sleep 1
  [ -n "${npid:-}" ] && kill -KILL "$npid" 2>/dev/null
  rm -f "/etc/synshare/$NAME.ron"
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
finish
