"""The schema compiler's command line: `tickwire schema compile SCHEMA... --out DIR`.

parse -> model -> generate `(path, text)` pairs -> one writer. Every stage but the writer
is pure; `--check` runs the same stages and compares instead of writing, for CI.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Iterable, Sequence

from .gen_js import DEFAULT_RUNTIME, generate_dts, generate_js
from .gen_python import generate_python
from .model import Model, load
from .parse import SchemaError

__all__ = ["generate", "main", "LANGUAGES"]


def _js(model: Model, js_runtime: str) -> list[tuple[str, str]]:
    return [
        (f"{model.name}.js", generate_js(model, js_runtime)),
        (f"{model.name}.d.ts", generate_dts(model, js_runtime)),
    ]


LANGUAGES: dict[str, Callable[[Model, str], list[tuple[str, str]]]] = {
    "py": lambda m, _: [(f"{m.name}.py", generate_python(m))],
    "js": _js,
}


def generate(model: Model, languages: Iterable[str], js_runtime: str = DEFAULT_RUNTIME) -> list[tuple[str, str]]:
    """The files a model compiles to, as (file name, text) pairs."""
    out: list[tuple[str, str]] = []
    for lang in languages:
        out.extend(LANGUAGES[lang](model, js_runtime))
    return out


def write(files: Sequence[tuple[str, str]], out_dir: str, check: bool) -> list[str]:
    """Write (or with check, compare) the files; returns the names that were stale."""
    stale = []
    for name, text in files:
        path = os.path.join(out_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                current = fh.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        stale.append(path)
        if not check:
            os.makedirs(out_dir, exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickwire schema compile", description=__doc__.splitlines()[0])
    parser.add_argument("schemas", nargs="+", metavar="SCHEMA", help=".fbs files")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the generated files go")
    parser.add_argument("--lang", default="py,js", help="comma-separated: py, js (js writes .js and .d.ts)")
    parser.add_argument("-I", "--include", action="append", default=[], metavar="DIR", help="include search path")
    parser.add_argument("--check", action="store_true", help="fail if the generated files are missing or stale")
    parser.add_argument(
        "--js-runtime",
        default=DEFAULT_RUNTIME,
        metavar="SPECIFIER",
        help=f"how generated JavaScript imports codecs/js/packed.js (default: {DEFAULT_RUNTIME})",
    )
    args = parser.parse_args(argv)
    languages = [x.strip() for x in args.lang.split(",") if x.strip()]
    unknown = [x for x in languages if x not in LANGUAGES]
    if unknown:
        parser.error(f"unknown language {unknown[0]!r}; choose from {', '.join(LANGUAGES)}")
    stale: list[str] = []
    for schema in args.schemas:
        try:
            model = load(schema, args.include)
            files = generate(model, languages, args.js_runtime)
        except SchemaError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        stale += write(files, args.out, args.check)
    if args.check and stale:
        for path in stale:
            print(f"stale: {path} (run the same command without --check)", file=sys.stderr)
        return 1
    if not args.check:
        for path in stale:
            print(f"wrote {path}")
    return 0
