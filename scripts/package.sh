#!/usr/bin/env bash
# Builds the Debian package: target/debian/synshare_VERSION_ARCH.deb, with
# the binary, the systemd units (synshare@.service, synshare-coordinator@
# .service), example configurations and the docs. Installs cargo-deb from
# the crate registry when it is missing.
#
#   scripts/package.sh            then: apt install ./target/debian/synshare_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: installing cargo-deb (cargo install --locked cargo-deb)"
  cargo install --locked --quiet cargo-deb
fi
cargo build --release --quiet
# The man page and shell completions, generated from the CLI's definition.
mkdir -p target/package
target/release/synshare man > target/package/synshare.1
gzip -9nf target/package/synshare.1
target/release/synshare completions bash > target/package/synshare.bash
target/release/synshare completions zsh > target/package/_synshare
target/release/synshare completions fish > target/package/synshare.fish
cargo deb --no-build --quiet --output target/debian/ >/dev/null
ls target/debian/synshare_*.deb
