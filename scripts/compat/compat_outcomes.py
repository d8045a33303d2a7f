"""A pytest plugin for scripts/check_compat.sh: every test's outcome, as pytest's summary counts it, as JSON.

Loaded with ``-p compat_outcomes`` (this folder on ``PYTHONPATH``); writes to the path in
``$CAM_COMPAT_OUTCOMES`` when the session ends. Each record is one report pytest's terminal summary counts:
``passed``, ``failed``, ``error`` (setup, teardown or collection), ``skipped``, ``xfailed``, ``xpassed``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_records: list[dict[str, Any]] = []
_config: pytest.Config | None = None


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    """One line saying why a test failed or was skipped."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(longrepr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    return first if len(first) <= 300 else first[:297] + "..."


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    assert _config is not None
    category = _config.hook.pytest_report_teststatus(report=report, config=_config)[0]
    if not category:  # a setup or teardown that passed
        return
    record = {"nodeid": report.nodeid, "when": report.when, "category": category}
    if category != "passed":
        record["message"] = _message(report)
    _records.append(record)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _records.append(
            {"nodeid": report.nodeid, "when": "collect", "category": "error", "message": _message(report)}
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("CAM_COMPAT_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"exitstatus": int(exitstatus), "records": _records}, stream, indent=1)
