"""Fixtures for the real-client suite: real `ringtail` processes, unique topic names, and the
broker log printed when a test fails (or when the broker died under a test)."""

from __future__ import annotations

import re
import uuid

import pytest

from harness import Broker, BrokerError

# Every broker started by a fixture, so a failing test can show their logs.
_LIVE_BROKERS: list[Broker] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long-running end-to-end test (still part of CI: run-tests.sh runs all)"
    )
    # kafka-python 3.0 loads its protocol schemas with a deprecated importlib API.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka.protocol.schemas.load_json")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _start(workdir, **kwargs) -> Broker:
    broker = Broker(workdir, **kwargs)
    _LIVE_BROKERS.append(broker)
    broker.start()
    return broker


@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory):
    broker = _start(tmp_path_factory.mktemp("ringtail-shared"))
    yield broker
    broker.terminate_quietly()
    _LIVE_BROKERS.remove(broker)


@pytest.fixture
def broker(_module_broker) -> Broker:
    """A broker shared by the tests of one module (each test uses its own topics).

    If an earlier test crashed it, it is started again on the same data dir so one crash
    does not cascade; the crash itself is reported against the test it happened in."""
    if not _module_broker.alive():
        _module_broker.start()
    return _module_broker


@pytest.fixture
def broker_factory(tmp_path):
    """Start dedicated brokers: `broker_factory(env={...}, config={...}, settings={...},
    cores="0,1")` (`config`: Kafka broker settings; `settings`: Ringtail's own TOML keys)."""
    started: list[Broker] = []

    def make(**kwargs) -> Broker:
        workdir = tmp_path / f"broker{len(started)}"
        broker = _start(workdir, **kwargs)
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.terminate_quietly()
        _LIVE_BROKERS.remove(broker)


@pytest.fixture(autouse=True)
def _broker_watch(request):
    """After each test: fail it if a broker died under it; print broker logs if it failed."""
    yield
    crashed = [b for b in _LIVE_BROKERS if b.crashed()]
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    if failed or crashed:
        for broker in _LIVE_BROKERS:
            print(f"\nbroker {broker.bootstrap} (data {broker.data_dir}):")
            print(broker.tail(120))
    if crashed:
        # Mark them as seen so the next test does not report the same crash again.
        for broker in crashed:
            broker.stopped_on_purpose = True
        codes = ", ".join(f"{b.bootstrap} exit code {b.proc.returncode}" for b in crashed)
        raise BrokerError(f"broker process died during this test: {codes}")


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test (and this run), usable as a prefix too."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:80]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
