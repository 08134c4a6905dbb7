#!/usr/bin/env bash
# Installs the package on a fresh Debian/Ubuntu machine with systemd (a VM, or a container
# booted with systemd as PID 1), starts the unit, produces and reads a record, stops the unit
# and checks the shutdown was clean. Run as root from the repository root after
# `packaging/build-deb.sh`:
#
#   sudo packaging/test-install.sh target/debian/ringtail_*.deb
#
# Leaves the package installed (`apt purge ringtail` removes it).
set -euo pipefail
deb=${1:?usage: test-install.sh PATH.deb}
fail() { echo "test-install: FAIL: $*" >&2; journalctl -u ringtail --no-pager -n 60 >&2 || true; exit 1; }

apt-get install -y "./${deb#./}" || apt-get install -y "$deb"
id ringtail >/dev/null || fail "no ringtail user"
test -f /etc/ringtail/ringtail.toml || fail "no config file"
systemctl daemon-reload
systemctl start ringtail
for _ in $(seq 1 60); do
    curl -sf 127.0.0.1:9644/ready >/dev/null && break
    sleep 1
done
curl -sf 127.0.0.1:9644/ready >/dev/null || fail "not ready within 60 s"
ringtail tune --data-dir /var/lib/ringtail/data >/dev/null || fail "tune report failed"
if command -v kcat >/dev/null; then
    echo "hello" | kcat -b 127.0.0.1:9092 -t install-check -P
    [ "$(kcat -b 127.0.0.1:9092 -t install-check -C -e -c 1 -q)" = "hello" ] || fail "record not read back"
fi
curl -sf 127.0.0.1:9644/metrics | grep -q '^ringtail_shard_partitions' || fail "no metrics"
systemctl stop ringtail
status=$(systemctl show -p ExecMainStatus --value ringtail)
[ "$status" = "0" ] || fail "broker exited with status $status on systemctl stop"
journalctl -u ringtail --no-pager | grep -q "stopped took_ms" || fail "no clean-shutdown line in the journal"
echo "test-install: OK (installed, started, served, stopped cleanly)"
