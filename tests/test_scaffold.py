"""`tickwire create NAME`: the project it writes compiles, is packaged, and passes its own
smoke test (run with this interpreter, which has the engine)."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tomllib

import pytest

from engine.scaffold import TEMPLATES, create, project_name, render

from helpers import ROOT


def test_project_names():
    assert project_name("my-game") == "my_game"
    assert project_name("/tmp/x/Space Race/") == "space_race"
    assert project_name("3d") == "game_3d"
    assert project_name("class") == "game_class"
    with pytest.raises(ValueError):
        project_name("---")


def test_templates_render_without_placeholders_left():
    files = dict(render("kart", "Kart Party"))
    assert {"README.md", "app.py", "room.py", "game.fbs", "pyproject.toml", ".gitignore", "web/index.html", "web/main.js", "tests/test_smoke.py"} <= set(files)
    for path, text in files.items():
        assert "{{" not in text, path
    assert "namespace kart;" in files["game.fbs"]
    assert "<title>Kart Party</title>" in files["web/index.html"]


def test_the_templates_are_package_data():
    """pyproject's package-data globs take every template (a wheel without them could not create)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        globs = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["engine"]
    engine_dir = os.path.join(ROOT, "engine")
    for root, _dirs, files in os.walk(TEMPLATES):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), engine_dir)
            assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), rel


def test_create_refuses_a_directory_that_holds_anything(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        create(str(tmp_path / "taken"))
    assert os.listdir(tmp_path / "taken") == ["notes.txt"]


def test_a_created_project_passes_its_smoke_test(tmp_path):
    target = tmp_path / "space-race"
    made = subprocess.run([sys.executable, "-m", "engine.cli", "create", str(target)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "tickwire run app:app" in made.stdout
    for rel in ("game.fbs", "generated/game.py", "generated/game.js", "generated/game.d.ts", "room.py", "app.py", "web/index.html", "tests/test_smoke.py"):
        assert (target / rel).is_file(), rel
    # Its generated codecs are what its schema compiles to.
    check = subprocess.run(
        [sys.executable, "-m", "engine.cli", "schema", "compile", "game.fbs", "--out", "generated", "--lang", "py,js",
         "--js-runtime", "/tickwire/packed.js", "--check"],
        cwd=target, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    smoke = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target, capture_output=True, text=True, timeout=240
    )
    assert smoke.returncode == 0, smoke.stdout[-5000:] + smoke.stderr[-2000:]
    assert "2 passed" in smoke.stdout
