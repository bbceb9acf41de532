"""The `tickwire` command.

    tickwire run MODULE:APP [--port 8000] ...     start a server
    tickwire schema compile SCHEMA... --out DIR   compile schemas to Python and JS codecs
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Sequence

__all__ = ["main", "load_app"]


def load_app(spec: str) -> Any:
    """`module:attribute` (or `module`, meaning `module:app`); calls it if it is a factory."""
    from .app import App

    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj = getattr(module, attr or "app")
    if not isinstance(obj, App) and callable(obj):
        obj = obj()
    if not isinstance(obj, App):
        raise SystemExit(f"{spec} is not a tickwire App")
    return obj


def _limits(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--limit takes NAME=VALUE, not {item!r}")
        out[name.strip()] = value.strip()
    return out


def _run(args: argparse.Namespace) -> int:
    from .server import run

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = load_app(args.app)
    s = app.settings
    if args.host is not None:
        s.host = args.host
    if args.port is not None:
        s.port = args.port
    if args.static:
        s.static_dir = args.static
    if args.origin:
        s.origins = args.origin
    if args.tls_cert:
        s.tls_cert, s.tls_key = args.tls_cert, args.tls_key
    if args.compression:
        s.compression = True
    if args.limit:
        app.limits = app.limits.with_overrides(**_limits(args.limit))
    run(app)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickwire", description="A realtime engine for multiplayer games.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start a server for MODULE:APP")
    p.add_argument("app", metavar="MODULE:APP")
    p.add_argument("--host", default=None, help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port for WebSocket and HTTP (default 8000)")
    p.add_argument("--static", default=None, metavar="DIR", help="serve the files of DIR over HTTP")
    p.add_argument("--origin", action="append", metavar="ORIGIN", help="allow this Origin (repeat; default: any)")
    p.add_argument("--tls-cert", default=None, metavar="PEM")
    p.add_argument("--tls-key", default=None, metavar="PEM")
    p.add_argument("--compression", action="store_true", help="enable permessage-deflate (off by default)")
    p.add_argument("--limit", action="append", metavar="NAME=VALUE", help="override a limit (see codecs/WIRE.md)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)

    s = sub.add_parser("schema", help="schema tools")
    ssub = s.add_subparsers(dest="schema_command", required=True)
    c = ssub.add_parser("compile", help="compile .fbs schemas", add_help=False)
    c.set_defaults(func=None)

    args, rest = parser.parse_known_args(argv)
    if args.command == "schema":
        from .schema.compile import main as compile_main

        return compile_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
