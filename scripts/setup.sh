#!/usr/bin/env bash
# Installs what synshare needs on a fresh Debian 12 machine, reserves
# hugepages where it can, and builds the release binaries (synshare and the
# benchmark tools, synshare-bench). Idempotent.
#
#   scripts/setup.sh            # packages + hugepages + build
#   SYNSHARE_HUGEPAGES=0 ...    # skip hugepages (nodes then use --no-huge)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  dpdk dpdk-dev libdpdk-dev   # DPDK 22.11 LTS, its headers, dpdk-testpmd
  libclang-dev clang          # bindgen
  pkg-config build-essential
  iproute2 nftables ethtool   # namespaces, veth, bridge; the wire kept from the kernel
  iputils-ping curl wrk       # real clients
  python3                     # the test cluster's HTTP service
  nginx-light apache2-utils   # scripts/e2e.sh: nginx as the service, ab as the client
  procps kmod
  strace                      # a stalled control thread, in the fault tests
  systemd                     # systemd-analyze: the units' exposure, checked by a test
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The test cluster runs nginx in its own namespaces (scripts/cluster.sh
  # --service nginx): a host-wide nginx that the package just started is
  # not wanted.
  if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# The TAP exception path needs /dev/net/tun.
if [ ! -c /dev/net/tun ]; then
  mkdir -p /dev/net
  mknod /dev/net/tun c 10 200 2>/dev/null || true
  chmod 0666 /dev/net/tun 2>/dev/null || true
fi
[ -c /dev/net/tun ] || echo "setup: warning: /dev/net/tun is missing; the TAP exception port will not start"

# Hugepages: 2 MiB pages for the nodes (each --in-memory -m 256) and the
# benchmarks. Where the kernel refuses, nodes fall back to --no-huge.
want=${SYNSHARE_HUGEPAGES:-1536}
hp=/sys/kernel/mm/hugepages/hugepages-2048kB
if [ "$want" -gt 0 ] && [ -w "$hp/nr_hugepages" ]; then
  have=$(cat "$hp/nr_hugepages")
  if [ "$have" -lt "$want" ]; then
    echo "$want" > "$hp/nr_hugepages" 2>/dev/null || true
  fi
  if ! grep -q '^[^ ]* /dev/hugepages hugetlbfs' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
  fi
fi
if grep -q hugetlbfs /proc/mounts && [ "$(cat $hp/free_hugepages 2>/dev/null || echo 0)" -gt 0 ]; then
  echo "setup: hugepages: $(cat $hp/nr_hugepages) x 2 MiB reserved, $(cat $hp/free_hugepages) free"
else
  echo "setup: hugepages unavailable: nodes will run with --no-huge (slower)"
fi

# A Rust toolchain of at least the version Cargo.toml states (rust-version,
# which every package inherits): rustup's when rustup is there, else
# Debian's rustc-web/cargo-web (bookworm's newer Rust, beside the 1.63 of
# its rustc package).
export PATH="$HOME/.cargo/bin:$PATH"
need=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
rust_ok() {
  local have
  have=$(rustc --version 2>/dev/null | awk '{print $2}')
  [ -n "$have" ] && command -v cargo >/dev/null && printf '%s\n%s\n' "$need" "$have" | sort -V -C
}
if ! rust_ok; then
  if command -v rustup >/dev/null; then
    echo "setup: installing Rust $need (rustup)"
    rustup toolchain install "$need" --profile minimal --component clippy,rustfmt
    rustup default "$need"
  else
    echo "setup: installing Debian's rustc-web and cargo-web (Rust >= $need)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rustc-web cargo-web >/dev/null
  fi
fi
if ! rust_ok; then
  echo "setup: Rust $need or later is needed (rust-version in Cargo.toml); found: $(rustc --version 2>/dev/null || echo none)" >&2
  exit 1
fi
cargo build --release --workspace --quiet
echo "setup: built target/release/synshare ($(target/release/synshare version)) and target/release/synshare-bench"
