"""Shared test fixtures.

Tests that drive a real tool (flatc, node, nats-server, chromium) ask for it with
`require_tool`: outside CI a missing tool skips the test, in CI (CI=true) it fails it,
because CI installs every tool and a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(message: str) -> NoReturn:
    """Skip the test for something this machine lacks; in CI, where everything is
    installed, fail it."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The path of a command-line tool, or skip (fail in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        missing(f"'{name}' is not installed (make system-deps installs it)")
    return path


def require_native():
    """The C extension engine/_speedups.c, or skip (fail in CI) when it was not built
    (setup.py builds it when a C compiler and Python's headers are there)."""
    try:
        from engine import _speedups
    except ImportError as e:
        missing(f"engine._speedups is not built ({e}); pip install -e . builds it with a C compiler")
    return _speedups


def require_node_bin(name: str) -> str:
    """A command from tests/node_modules/.bin (installed by `npm ci` in tests/), or skip
    (fail in CI)."""
    local = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules", ".bin", name)
    if os.path.exists(local):
        return local
    return require_tool(name)


@pytest.fixture(params=["native", "numpy"])
def native_and_numpy(request, monkeypatch):
    """Runs a test with the C extension's functions and again with their pure-Python
    twins (engine/speedups.py); a module opts in with
    `pytestmark = pytest.mark.usefixtures("native_and_numpy")`."""
    from engine import speedups

    monkeypatch.setattr(speedups, "native", require_native() if request.param == "native" else None)
    return request.param

