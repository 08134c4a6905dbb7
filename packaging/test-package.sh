#!/usr/bin/env bash
# Offline check of a built package (no installation, no root): extracts it, checks its
# contents and the unit file, runs the packaged binary with the packaged config file (the
# only overrides are free ports and two CPUs), waits for /ready, sends SIGTERM and checks
# it exits 0. A full install test on a fresh Debian machine is packaging/test-install.sh.
#
#   packaging/build-deb.sh && packaging/test-package.sh target/debian/ringtail_*.deb
set -euo pipefail
deb=${1:?usage: test-package.sh PATH.deb}
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-package: FAIL: $*" >&2; [ -f "$work/broker.log" ] && tail -30 "$work/broker.log" >&2; exit 1; }

dpkg-deb -x "$deb" "$work/pkg"
dpkg-deb -e "$deb" "$work/control"
for f in usr/bin/ringtail etc/ringtail/ringtail.toml usr/lib/systemd/system/ringtail.service; do
    [ -e "$work/pkg/$f" ] || fail "missing /$f"
done
grep -qx /etc/ringtail/ringtail.toml "$work/control/conffiles" || fail "config is not a conffile"
grep -q "adduser --system" "$work/control/postinst" || fail "postinst creates no user"
unit="$work/pkg/usr/lib/systemd/system/ringtail.service"
for key in LimitMEMLOCK= LimitNOFILE= TimeoutStopSec= "ExecStartPre=-/usr/bin/ringtail tune" CPUAffinity; do
    grep -q -- "$key" "$unit" || fail "unit lacks $key"
done
if command -v systemd-analyze >/dev/null; then
    # The unit names /usr/bin/ringtail, which is not installed here: only that may fail.
    out=$(systemd-analyze verify "$unit" 2>&1 | grep -v "/usr/bin/ringtail" || true)
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
bin="$work/pkg/usr/bin/ringtail"
"$bin" --version
"$bin" tune --data-dir "$work/run/data" >/dev/null || fail "ringtail tune (report) failed"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kafka=$(port); admin=$(port)
mkdir -p "$work/run"
cd "$work/run"   # data_dir = "./data", as under the unit's WorkingDirectory
"$bin" serve --config "$work/pkg/etc/ringtail/ringtail.toml" --kafka-addr "127.0.0.1:$kafka" \
    --admin-addr "127.0.0.1:$admin" --cores 0,1 >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    curl -sf "127.0.0.1:$admin/ready" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || fail "broker exited during start-up"
    sleep 0.5
done
curl -sf "127.0.0.1:$admin/ready" >/dev/null || fail "not ready within 60 s"
curl -sf "127.0.0.1:$admin/metrics" | grep -q '^ringtail_shard_partitions' || fail "no metrics"
[ -d "$work/run/data" ] || fail "data not under the working directory"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
grep -q "stopped took_ms" "$work/broker.log" || fail "no clean-shutdown line"
echo "test-package: OK"
