"""The `tickwire` command.

    tickwire run MODULE:APP [--port 8000] [--workers N] [--brokers M]   start a server
    tickwire restart --pid-file F                 rolling restart of its workers
    tickwire schema compile SCHEMA... --out DIR   compile schemas to Python and JS codecs
    tickwire bench [SCENARIO...] [--quick] ...    Tickwire and the anchors, side by side (bench/)
    tickwire bots --n N URL                       N Python clients walking in the sample game
    tickwire create NAME                          a new project that runs as is
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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line, as the names of engine.app.Settings fields."""
    out: dict[str, Any] = {}
    if args.static:
        out["static_dir"] = os.path.abspath(args.static)
    if args.origin:
        out["origins"] = args.origin
    if args.tls_cert:
        out["tls_cert"], out["tls_key"] = os.path.abspath(args.tls_cert), os.path.abspath(args.tls_key)
    if args.compression:
        out["compression"] = True
    return out


def _run(args: argparse.Namespace) -> int:
    app = load_app(args.app)  # fail early, in the terminal, if the app does not load
    limits = _limits(args.limit or [])
    app.limits.with_overrides(**limits)  # validates the names
    host = args.host or app.settings.host
    port = args.port if args.port is not None else app.settings.port
    if args.single:
        from .server import run

        logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for key, value in _overrides(args).items():
            setattr(app.settings, key, value)
        app.limits = app.limits.with_overrides(**limits)
        run(app, host, port)
        return 0
    import uvloop

    from .supervisor import Supervisor

    supervisor = Supervisor(
        args.app,
        host=host,
        port=port,
        workers=args.workers,
        brokers=args.brokers,
        scheduling=args.scheduling,
        settings=_overrides(args),
        limits=limits,
        log_format=args.log_format,
        log_level=args.log_level,
        pid_file=args.pid_file,
    )
    return uvloop.run(supervisor.run())


def _restart(args: argparse.Namespace) -> int:
    import signal

    try:
        with open(args.pid_file) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"cannot signal the server in {args.pid_file}: {exc}", file=sys.stderr)
        return 1
    print(f"rolling restart requested (supervisor pid {pid})")
    return 0


def _bench(rest: list[str]) -> int:
    """`python -m bench` from the repository this engine was loaded from: the benchmarks
    and their anchors live in the repository (bench/), not in the installed package."""
    from pathlib import Path

    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "bench" / "__init__.py").is_file() and (root / "bench" / "cli.py").is_file():
            break
    else:
        print(
            "tickwire bench runs the benchmarks in a checkout of the Tickwire repository (its bench/ folder), "
            "and this engine was not loaded from one: run it from the repository, or there `python -m bench`.",
            file=sys.stderr,
        )
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench.cli import main as bench_main

    return bench_main(rest)


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
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--brokers", type=int, default=1, help="broker processes sharing the channels (default 1)")
    p.add_argument("--scheduling", choices=["reuseport", "rr"], default="reuseport", help="how connections reach workers")
    p.add_argument("--single", action="store_true", help="one process, no supervisor (for debugging)")
    p.add_argument("--pid-file", default=None, help="write the supervisor's pid here (for `tickwire restart`)")
    p.add_argument("--log-format", choices=["json", "text"], default=None, help="default: text on a terminal, else JSON lines")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)

    r = sub.add_parser("restart", help="rolling restart of a running server's workers")
    r.add_argument("--pid-file", required=True)
    r.set_defaults(func=_restart)

    s = sub.add_parser("schema", help="schema tools")
    ssub = s.add_subparsers(dest="schema_command", required=True)
    c = ssub.add_parser("compile", help="compile .fbs schemas", add_help=False)
    c.set_defaults(func=None)

    sub.add_parser("bench", help="benchmarks: Tickwire and the anchors side by side (see bench/README.md)", add_help=False)

    from . import bots

    b = sub.add_parser("bots", help="N Python clients that join the sample game's world and walk (Ctrl-C stops)")
    bots.add_arguments(b)
    b.set_defaults(func=bots.run_from_args)

    from . import scaffold

    n = sub.add_parser("create", help="write a new project (schema, room, web page, README, smoke test)")
    scaffold.add_arguments(n)
    n.set_defaults(func=scaffold.run_from_args)

    args, rest = parser.parse_known_args(argv)
    if args.command == "schema":
        from .schema.compile import main as compile_main

        return compile_main(rest)
    if args.command == "bench":
        return _bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
