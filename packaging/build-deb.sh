#!/usr/bin/env bash
# Builds the Debian package: target/debian/ringtail_<version>-1_<arch>.deb, holding
# /usr/bin/ringtail, /etc/ringtail/ringtail.toml (a conffile: every key with its default),
# the systemd unit /lib/systemd/system/ringtail.service and a postinst that creates the
# `ringtail` system user. Needs cargo-deb (installed here from crates.io when missing).
#
#   packaging/build-deb.sh            # release build + package
#   packaging/build-deb.sh --no-build # package an existing target/release/ringtail
#
# Install and run:  sudo apt install ./target/debian/ringtail_*.deb
#                   sudo systemctl enable --now ringtail
#                   curl -s 127.0.0.1:9644/ready
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
# Debug symbols go to a compressed .debug file in the package (backtraces keep working;
# the binary itself is stripped).
cargo deb -p ringtail-broker --separate-debug-symbols --compress-debug-symbols=zlib "$@"
ls -l target/debian/*.deb
