"""`tickwire create NAME`: a new game project that runs as is, as `socketcluster create` made one.

    tickwire create mygame
    cd mygame && tickwire run app:app          # http://localhost:8000/
    python -m pytest                           # its smoke test

It writes, from the templates in engine/templates/project/ (placeholders `{{name}}` and
`{{title}}`):

    mygame/
      README.md            how to run, test, and change the schema
      pyproject.toml       the project, with pytest's settings
      game.fbs             the schema: the entity struct, the inputs, the chat line
      generated/           game.py, game.js, game.d.ts: compiled from game.fbs here and now
      room.py              the room: avatars that walk, chat, interest-managed entities
      app.py               the App: the room type, the web page, the generated codec's route
      web/index.html       the page and its script (web/main.js), importing /tickwire.js
      tests/test_smoke.py  the room stepped in process, then the server for real

Rendering is pure (`render(name) -> [(path, text)]`); `write` is the only step that touches
the disk, and it refuses to write into a directory that holds anything.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import keyword
import os
import re
import sys
from typing import Sequence

__all__ = ["TEMPLATES", "project_name", "render", "write", "create", "main"]

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "project")
SUFFIX = ".tmpl"
# Files whose real names a package's data would hide (dotfiles), by template name.
RENAMES = {"gitignore": ".gitignore"}


def project_name(path: str) -> str:
    """The identifier a project directory's name gives (schema namespace, app name)."""
    base = os.path.basename(os.path.normpath(path))
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", base).strip("_").lower()
    if not name:
        raise ValueError(f"cannot make a project name out of {path!r}")
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "game_" + name
    return name


def render(name: str, title: str | None = None) -> list[tuple[str, str]]:
    """The project's files as (relative path, text), from the templates."""
    title = title or name.replace("_", " ").title()
    out = []
    for root, _dirs, files in os.walk(TEMPLATES):
        for fname in sorted(files):
            if not fname.endswith(SUFFIX):
                continue
            rel = os.path.relpath(os.path.join(root, fname), TEMPLATES)[: -len(SUFFIX)]
            head, tail = os.path.split(rel)
            rel = os.path.join(head, RENAMES.get(tail, tail))
            with open(os.path.join(root, fname), encoding="utf-8") as fh:
                text = fh.read()
            out.append((rel, text.replace("{{name}}", name).replace("{{title}}", title)))
    return sorted(out)


def write(directory: str, files: Sequence[tuple[str, str]]) -> None:
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise FileExistsError(f"{directory} exists and is not an empty directory")
    for rel, text in files:
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def create(directory: str, title: str | None = None) -> list[str]:
    """Write a new project into `directory` and compile its schema; the files written."""
    from .schema.compile import main as compile_main

    name = project_name(directory)
    files = render(name, title)
    write(directory, files)
    generated = os.path.join(directory, "generated")
    os.makedirs(generated, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." lines: listed by the caller
        status = compile_main(
            [os.path.join(directory, "game.fbs"), "--out", generated, "--lang", "py,js", "--js-runtime", "/tickwire/packed.js"]
        )
    if status != 0:
        raise RuntimeError("the project's schema did not compile (a bug in the templates)")
    with open(os.path.join(generated, "__init__.py"), "w", encoding="utf-8"):
        pass
    return sorted([rel for rel, _ in files] + [os.path.join("generated", f) for f in os.listdir(generated)])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", metavar="NAME", help="the project's directory (created; must not hold anything)")
    p.add_argument("--title", default=None, help="the game's name on its page (default: from NAME)")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        written = create(args.directory, args.title)
    except (FileExistsError, ValueError) as exc:
        print(f"tickwire create: {exc}", file=sys.stderr)
        return 1
    for rel in written:
        print(f"  {os.path.join(args.directory, rel)}")
    print(
        f"\nA new game in {args.directory}/. Run it:\n\n"
        f"    cd {args.directory}\n    tickwire run app:app        # then open http://localhost:8000/\n\n"
        "and test it with `python -m pytest` there. Its README says what goes where."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickwire create", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
