"""SLOW, end to end: `python -m bench --quick` runs every scenario against every system and
writes well-formed results, the chart and a README section.

About 5 minutes on the 2-core machine (the anchors' runs, and 17 of Tickwire's: one
worker in 7 scenarios, the 1- and 2-worker clusters in 5), plus the anchors' first
install into the bench cache (npm ci and pip from the package registries, about 30 s).
It checks that the harness, every anchor and every Tickwire system work, never how fast:
no figure is compared with anything. The systems are bench/catalog.py's, so a system
added there is covered here.

It runs in CI (CI=true) and, elsewhere, only with TICKWIRE_BENCH_QUICK=1: on a 2-core
machine shared by several people, every local pytest run should not load both cores
for two minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, require_tool

from bench import catalog

REPO = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench:start -->"


def test_quick_run_of_every_scenario_writes_well_formed_results(tmp_path):
    if not (IN_CI or os.environ.get("TICKWIRE_BENCH_QUICK")):
        pytest.skip("slow (about 2 minutes of both cores): runs in CI, or with TICKWIRE_BENCH_QUICK=1")
    require_tool("node")
    require_tool("npm")
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\n## Performance\n")
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--strict",
        "--out",
        str(tmp_path),
        "--name",
        "quick",
        "--readme",
        str(readme),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    assert done.returncode == 0, done.stderr[-6000:]

    doc = json.loads((tmp_path / "quick.json").read_text())
    expected = {(sc.name, s.name) for sc in catalog.scenarios() for s in catalog.systems() if sc.name in s.scenarios}
    got = {(s["scenario"], s["system"]): s for s in doc["summaries"]}
    assert set(got) == expected
    for key, s in got.items():
        assert s["status"] == "ok", (key, s.get("error"))
        value = s["median"][s["main"]]
        assert isinstance(value, float) and value > 0, key
        assert s["machine"]["cpu_model"] and s["versions"], key
    for r in doc["runs"]:
        assert r["status"] == "ok" and r["machine"]["kernel"]
        if r["scenario"] != "memory":
            assert r["units"] > 0 and r["cpu_us_per_unit"] > 0 and r["units_per_s"] > 0
            assert r["server_rss_kib"] > 0
    tickwire = {name for _, name in expected if name.startswith("tickwire")}
    assert tickwire == {"tickwire", "tickwire-1w", "tickwire-2w", "tickwire-scjson"}
    # stdout: one JSON line per scenario and system
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {(x["scenario"], x["system"]) for x in lines} == expected

    assert (tmp_path / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = readme.read_text()
    assert text.startswith("# Project\n\n## Performance\n") and SECTION_START in text and "](quick.png)" in text
