#!/usr/bin/env bash
# The Debian package: it builds, installs with apt, and its unit's ExecStart
# (run as written, systemd being offline here) starts a node in a test
# namespace that reaches READY on a NOTIFY_SOCKET this test listens on, then
# serves the VIP. The package is removed afterwards.
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
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$SS_TMP/apt.log" 2>&1
check "apt installs it" dpkg -s synshare
check "it ships the units and the binary" bash -c "dpkg -L synshare | grep -q $UNIT && dpkg -L synshare | grep -q synshare-coordinator@.service && test -x /usr/bin/synshare"
check "and the man page and completions" bash -c "dpkg -L synshare | grep -q man1/synshare.1.gz && dpkg -L synshare | grep -q bash-completion/completions/synshare && zcat /usr/share/man/man1/synshare.1.gz | grep -q '^.TH synshare'"
echo "    $(/usr/bin/synshare version)"

# A one-node cluster in namespaces; its node is then run by the unit.
"$CLUSTER" up --nodes 1 >/dev/null 2>&1 || { fail "cluster up"; finish; exit 1; }
"$CLUSTER" stop-node 1 >/dev/null 2>&1
mkdir -p /etc/synshare
cp "$STATE/node1.ron" "/etc/synshare/$NAME.ron"
pre=$(sed -n 's/^ExecStartPre=//p' "$UNIT" | sed "s/%i/$NAME/g")
start=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s/%i/$NAME/g")
check "the unit's ExecStartPre passes as written ($pre)" $pre
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
kill -INT "$npid"; wait "$npid" 2>/dev/null; npid=""
finish
