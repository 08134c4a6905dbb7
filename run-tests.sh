#!/usr/bin/env bash
# The single test command for Ringtail (CI runs it through .ci/run).
#
#   1. installs what the client tests need, only when missing (kcat, and as root iptables and
#      e2fsprogs for the replication fault suite, from apt; Python client
#      libraries from PyPI, pinned to the major versions we tested against);
#   2. checks formatting (cargo fmt) and lints (cargo clippy -D warnings);
#   3. builds the workspace and its tests in release mode (one build, shared by both) and runs
#      every crate's tests;
#   4. runs the real-client suite (broker/tests/clients) against target/release/ringtail.
#
# Idempotent: a second run installs nothing and only rebuilds what changed.
# Env: CARGO_TARGET_DIR (honoured), PYTEST_ARGS (extra pytest arguments, e.g. "-k kcat"),
#      PYTEST_TIMEOUT_S (per-test time limit, default 600), PYTEST_WORKERS (parallel pytest
#      processes, default 2; 0 = one process).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo_root"

log() { printf '\n== %s ==\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
status_tools="FAILED"
status_lint="not run"
status_cargo_build="not run"
status_cargo_test="not run"
status_pytest="not run"

summary() {
  local rc=$?
  local verdict="PASSED"
  [ "$rc" -eq 0 ] || verdict="FAILED (exit $rc)"
  echo
  echo "run-tests: $verdict — test tools: $status_tools; cargo build: $status_cargo_build;" \
    "lint: $status_lint; cargo test: $status_cargo_test; client tests: $status_pytest"
}
trap summary EXIT

# --- 1. Tools the client tests need ---------------------------------------------------
apt_missing=()
command -v kcat >/dev/null 2>&1 || apt_missing+=(kcat)
# The replication fault suite: network partitions (iptables owner match), a loop-mounted
# ext4 data dir (mkfs.ext4). It runs them only as root; elsewhere those tests skip.
if [ "$(id -u)" -eq 0 ]; then
  command -v iptables >/dev/null 2>&1 || apt_missing+=(iptables)
  command -v mkfs.ext4 >/dev/null 2>&1 || apt_missing+=(e2fsprogs)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  log "installing ${apt_missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

# Known-good major versions (see kafka-compat-notes.md in the steering repo's shared/): a new major version
# of a client is a deliberate upgrade, not something CI picks up by accident.
python_requirements=(
  "confluent-kafka>=2.16,<3"
  "kafka-python>=3.0,<4"
  "python-snappy>=0.7,<1"
  "lz4>=4,<5"
  "zstandard>=0.22,<1"
  "pytest>=8,<10"
  "pytest-timeout>=2,<3"
  "pytest-xdist>=3,<4"
)
# Ask pip only for the requirements that are not already satisfied, so a warm machine
# does not touch the network at all.
missing_requirements="$(python3 - "${python_requirements[@]}" <<'PY'
import sys
from importlib import metadata

def satisfied(spec: str) -> bool:
    name, _, rest = spec.partition(">=")
    low, _, high = rest.partition(",<")
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    def key(version: str):
        parts = []
        for piece in version.split(".")[:3]:
            digits = "".join(ch for ch in piece if ch.isdigit())
            parts.append(int(digits) if digits else 0)
        return tuple(parts + [0] * (3 - len(parts)))
    return key(low) <= key(installed) < key(high)

print(" ".join(spec for spec in sys.argv[1:] if not satisfied(spec)))
PY
)"
if [ -n "$missing_requirements" ]; then
  log "installing Python packages: $missing_requirements"
  # shellcheck disable=SC2086 # word splitting of the requirement list is intended
  python3 -m pip install --quiet --disable-pip-version-check $missing_requirements
fi
status_tools="ok"

# --- 2. Lints: formatting and clippy (the workspace's deny lints only bite when clippy runs) --
log "cargo fmt --all --check; cargo clippy --workspace --all-targets -- -D warnings"
if cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings; then
  status_lint="ok"
else
  status_lint="FAILED"
  exit 1
fi

# --- 3. Rust build and unit/integration tests -----------------------------------------
# One build of every unit `cargo test` runs (lib, bins, tests, examples: its default targets)
# plus the binaries the client tests use. Built together, the binaries get the same dependency
# features as the tests (dev-dependencies such as proptest and criterion turn on features of
# serde, regex, bitflags, crossbeam...), so `cargo test` below compiles nothing again. A plain
# `cargo build --release` resolves features without dev-dependencies: `cargo test` then
# rebuilt about 75 crates (glommio, kafka-protocol, tracing-subscriber, the workspace's own
# libraries...) a second time, 3-5 minutes of a cold CI run.
log "cargo build --release --workspace --lib --bins --tests --examples"
if cargo build --release --workspace --lib --bins --tests --examples; then
  status_cargo_build="ok"
else
  status_cargo_build="FAILED"
  exit 1
fi

failed=0
log "cargo test --release --workspace --no-fail-fast"
if cargo test --release --workspace --no-fail-fast; then
  status_cargo_test="ok"
else
  status_cargo_test="FAILED"
  failed=1
fi

# --- 4. Real clients against the real binary -----------------------------------------
log "client tests (pytest broker/tests/clients)"
export RINGTAIL_BIN="$target_dir/release/ringtail"
# shellcheck disable=SC2086 # PYTEST_ARGS is a list of arguments
# Every client test has a time limit, so a hang (a client blocked in close(), a broker that
# stopped answering) fails that test quickly instead of eating CI's whole budget.
# Two worker processes, one module at a time each (--dist loadfile: a module's shared broker
# stays in one process): most of the suite's wall time is waiting (session timeouts, retention
# passes, restarts, a one-minute offset expiry), which the other worker fills. PYTEST_WORKERS=0
# runs everything in one process, in order. --durations shows where the time goes.
if python3 -m pytest -v -rfE --timeout="${PYTEST_TIMEOUT_S:-600}" \
  -n "${PYTEST_WORKERS:-2}" --dist loadfile --durations=25 \
  ${PYTEST_ARGS:-} broker/tests/clients; then
  status_pytest="ok"
else
  status_pytest="FAILED"
  failed=1
fi

exit "$failed"
