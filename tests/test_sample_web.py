"""The sample game's pure browser modules (sample_game/web/controls.js, meter.js,
terrain.js) under node's own test runner: sample_game/test/*.test.mjs."""

from __future__ import annotations

import os
import subprocess

from conftest import require_tool
from helpers import ROOT

NODE_TESTS = os.path.join(ROOT, "sample_game", "test")


def test_node_suite():
    node = require_tool("node")
    files = sorted(f for f in os.listdir(NODE_TESTS) if f.endswith(".test.mjs"))
    assert files == ["controls.test.mjs", "meter.test.mjs", "terrain.test.mjs"]
    result = subprocess.run(
        [node, "--test", *(os.path.join("sample_game", "test", f) for f in files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
