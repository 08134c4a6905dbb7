"""`ringtail config print` with the real binary: every key's effective value and where it came
from (default, the --config file, an environment variable, a flag), as a table and as JSON;
and the start-up errors for unknown keys and bad values, which name the key, from both
`config print` and `serve`. No broker is needed: both stop before opening anything."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness import repo_root, ringtail_bin

RUN_TIMEOUT_S = 60


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs `ringtail ARGS` with no RINGTAIL_* variable but the ones in `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGTAIL_")}
    clean.update(env or {})
    return subprocess.run(
        [str(ringtail_bin()), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=clean,
        cwd=cwd,
    )


def print_json(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    out = run("config", "print", "--format", "json", *args, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return doc


def by_key(doc: dict) -> dict[str, dict]:
    rows = {row["key"]: row for row in doc["settings"]}
    assert len(rows) == len(doc["settings"]), "a key printed twice"
    return rows


@pytest.mark.timeout(120)
def test_defaults_cover_every_key(tmp_path):
    doc = print_json(cwd=tmp_path)
    assert doc["config_file"] is None
    rows = by_key(doc)
    assert all(r["source"] == "default" and r["origin"] is None for r in rows.values()), rows
    assert rows["kafka_addr"]["value"] == "0.0.0.0:9092"
    assert rows["node_id"]["value"] == 0
    assert rows["move_connections"]["value"] is True
    assert rows["controller_addr"]["value"] is None
    assert rows["data_dir"]["value"].startswith(os.path.realpath(tmp_path)), rows["data_dir"]
    assert rows["kafka.num.partitions"]["value"] == "1"
    # Every key the template lists (it lists every key the loader knows, a unit test checks
    # that), the [kafka] ones too, is printed.
    template = (repo_root() / "packaging" / "ringtail.toml").read_text()
    listed = re.findall(r'^(?:# )?([a-z_]+|"[a-z.]+") = ', template, flags=re.MULTILINE)
    assert len(listed) > 50, listed
    for name in listed:
        key = "kafka." + name.strip('"') if name.startswith('"') else name
        assert key in rows, f"{key} is in packaging/ringtail.toml but not printed"


@pytest.mark.timeout(120)
def test_the_template_resolves_to_the_defaults(tmp_path):
    template = repo_root() / "packaging" / "ringtail.toml"
    with_template = by_key(print_json("--config", str(template), cwd=tmp_path))
    built_in = by_key(print_json(cwd=tmp_path))
    assert {k: r["value"] for k, r in with_template.items()} == {k: r["value"] for k, r in built_in.items()}


@pytest.mark.timeout(120)
def test_sources_file_env_flag(tmp_path):
    config = tmp_path / "ringtail.toml"
    config.write_text(
        'kafka_addr = "127.0.0.1:19092"\n'
        "idle_poll_us = 50\n"
        "shutdown_drain_ms = 1000\n"
        'rack = "from-file"\n'
        "[kafka]\n"
        '"num.partitions" = 3\n'
    )
    env = {
        "RINGTAIL_CONFIG": str(config),
        # Over the file: a limit read from its variable, and a serve flag's variable.
        "RINGTAIL_SHUTDOWN_DRAIN_MS": "2500",
        "RINGTAIL_RACK": "from-env",
        # Not a variable the broker reads: the file's value stands.
        "RINGTAIL_IDLE_POLL_US": "7",
    }
    doc = print_json("--kafka-addr", "127.0.0.1:29092", "--node-id", "5", env=env, cwd=tmp_path)
    assert doc["config_file"] == {"path": str(config), "source": "env", "origin": "RINGTAIL_CONFIG"}
    rows = by_key(doc)

    def shows(key, value, source, origin):
        row = rows[key]
        assert (row["value"], row["source"], row["origin"]) == (value, source, origin), row

    shows("kafka_addr", "127.0.0.1:29092", "flag", "--kafka-addr")
    shows("node_id", 5, "flag", "--node-id")
    shows("rack", "from-env", "env", "RINGTAIL_RACK")
    shows("shutdown_drain_ms", 2500, "env", "RINGTAIL_SHUTDOWN_DRAIN_MS")
    shows("idle_poll_us", 50, "file", str(config))
    shows("kafka.num.partitions", "3", "file", str(config))
    shows("kafka.log.segment.bytes", "1073741824", "default", None)
    # Derived from the listener, not set anywhere.
    shows("advertised_addr", "127.0.0.1:29092", "default", None)

    # The same as a table for people.
    out = run("config", "print", "--kafka-addr", "127.0.0.1:29092", env=env, cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"config file: {config} (env RINGTAIL_CONFIG)"
    assert lines[1].split() == ["KEY", "VALUE", "SOURCE"]
    table = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert table["kafka_addr"] == ["127.0.0.1:29092", "flag", "--kafka-addr"]
    assert table["shutdown_drain_ms"] == ["2500", "env", "RINGTAIL_SHUTDOWN_DRAIN_MS"]
    assert table["idle_poll_us"] == ["50", "file", str(config)]
    assert table["kafka.num.partitions"] == ["3", "file", str(config)]
    assert table["controller_addr"] == ["-", "default"]
    assert len(table) == len(rows)


BAD_CONFIGS = [
    # (file text, extra env, text the one error line must contain)
    ('kafka_adr = "0.0.0.0:9092"\n', {}, "kafka_adr"),
    ('max_connections_per_shard = "many"\n', {}, "max_connections_per_shard"),
    ("idle_poll_us = 5\nmove_connections = 3\n", {}, "move_connections"),
    ("shutdown_close_concurrency = 0\n", {}, "shutdown_close_concurrency"),
    ('advertised_addr = "no-port"\n', {}, "advertised_addr"),
    ('controller_quorum = "x"\n', {}, "controller_quorum"),
    ("broker_heartbeat_interval_ms = 20000\n", {}, "broker_heartbeat_interval_ms"),
    ("", {"RINGTAIL_MAX_PARTITIONS_PER_SHARD": "lots"}, "RINGTAIL_MAX_PARTITIONS_PER_SHARD"),
    ('[kafka]\n"num.partitionz" = 3\n', {}, "num.partitionz"),
    ('[kafka]\n"num.partitions" = "three"\n', {}, "num.partitions"),
    ('[kafka]\n"log.cleanup.policy" = "shred"\n', {}, "log.cleanup.policy"),
    ("kafka = 3\n", {}, "kafka"),
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("text,env,needle", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_bad_configs_are_errors_naming_the_key(tmp_path, text, env, needle):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    data_dir = tmp_path / "data"
    for args in (
        ["config", "print", "--config", str(config)],
        # serve refuses it the same way, before it listens on anything.
        ["serve", "--config", str(config), "--kafka-addr", "127.0.0.1:0", "--admin-addr", "off",
         "--data-dir", str(data_dir)],
    ):
        out = run(*args, env=env, cwd=tmp_path)
        assert out.returncode != 0, out.stdout
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("ringtail: ") and needle in lines[0], out.stderr
        assert out.stdout == ""


@pytest.mark.timeout(60)
def test_bad_format_is_refused(tmp_path):
    out = run("config", "print", "--format", "yaml", cwd=tmp_path)
    assert out.returncode != 0 and "--format" in out.stderr
