"""``--log-format json``: one JSON object per line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import orjson
import pytest

from bayeux_trio.ops._logging import JsonFormatter, configure_logging


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("bayeux.server", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_record_becomes_one_json_line() -> None:
    line = JsonFormatter().format(_record(client_id="abc", event="Handshaken", odd=object()))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "bayeux.server"
    assert entry["message"] == "hello x"
    assert entry["client_id"] == "abc"
    assert entry["event"] == "Handshaken"
    assert entry["odd"].startswith("<object")  # not JSON: written as its str()
    assert entry["time"].endswith("Z")
    assert set(entry) == {"time", "level", "logger", "message", "client_id", "event", "odd"}


def test_exceptions_are_kept_on_the_same_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "bayeux", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    entry = orjson.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["level"] == "error"


def test_configure_logging_replaces_the_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("debug", "json")
        logging.getLogger("bayeux.test").debug("first", extra={"client_id": "c1"})
        configure_logging("info", "text")
        logging.getLogger("bayeux.test").info("second")
        logging.getLogger("bayeux.test").debug("hidden")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert orjson.loads(lines[0])["client_id"] == "c1"
    assert lines[1].endswith("INFO bayeux.test: second")


def test_the_server_logs_json_from_the_command_line() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bayeux_trio", "serve", "--port", "0", "--log-format", "json"],
        stderr=subprocess.PIPE,
        env=env,
    )
    # A server that never logs must not hang the test: kill it after 20 s.
    watchdog = threading.Timer(20.0, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the "serving" line comes first
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()
    entry = orjson.loads(line)
    assert entry["logger"] == "bayeux.server"
    assert entry["message"].startswith("serving Bayeux at http://127.0.0.1:")
