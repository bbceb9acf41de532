"""`python -m bench` (later also `tickwire bench`): run scenarios, write the results, the
chart and, on request, a README's performance section.

    python -m bench                      every scenario, every system (3 runs, 5 for headline ones)
    python -m bench fanout churn --quick a short smoke run of two scenarios
    python -m bench --systems websockets,socketcluster --runs 5 fanout
    python -m bench --set fanout.rate=20 fanout
    python -m bench --list               scenarios and systems
    python -m bench --setup              install every anchor now
    python -m bench --report R.json --readme README.md   regenerate chart and section from a results file

Progress and tables go to stderr; stdout gets one JSON line per scenario and system.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import catalog
from bench.anchors.install import PY_CHART, cache_dir, ensure_venv, file_lock, setup_all
from bench.measure import measure_run
from bench.proc import machine_description
from bench.report import build_results, load_results, markdown, write_json, write_readme_section
from bench.runner import Progress, run_jobs, schedule, select
from bench.system import REPO, Env, Unavailable

DEFAULT_OUT = REPO / "bench" / "results"


def parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """["fanout.rate=20", "mmo.clients=1000"] -> {"fanout": {"rate": 20}, ...}; values are
    JSON when they parse as JSON ("[0,1000]", "0.5", "true"), strings otherwise."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        scenario, dot, name = key.partition(".")
        if not eq or not dot or not scenario or not name:
            raise ValueError(f"--set {item!r}: expected SCENARIO.PARAM=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(scenario, {})[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description="Tickwire benchmarks: Tickwire and the anchors, side by side."
    )
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all; see --list)")
    ap.add_argument("--quick", action="store_true", help="short smoke-test form of each scenario, one run per system")
    ap.add_argument(
        "--runs", type=int, help="runs per system and scenario (default 3, 5 for headline scenarios, 1 with --quick)"
    )
    ap.add_argument("--systems", help="comma-separated system names to run (default: all that take part)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="SCENARIO.PARAM=VALUE", help="override a scenario parameter"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    ap.add_argument("--name", help="file name stem for the results (default: the UTC date and time)")
    ap.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    ap.add_argument("--chart", type=Path, help="where to write the chart (default: next to the results)")
    ap.add_argument(
        "--readme", type=Path, help="write the performance section into this file, between the bench markers"
    )
    ap.add_argument(
        "--report",
        type=Path,
        metavar="RESULTS",
        help="run nothing: draw the chart / write --readme from this results file",
    )
    ap.add_argument("--list", action="store_true", help="list scenarios and systems")
    ap.add_argument("--setup", action="store_true", help="install every anchor into the cache now")
    ap.add_argument(
        "--strict", action="store_true", help="exit with 1 when a run is not ok (unavailable, failed, skipped)"
    )
    return ap


# The figures a summary's stdout line carries (the results file has them all, with ranges).
LINE_FIGURES = (
    "user_us_per_unit",
    "sys_us_per_unit",
    "units_per_s",
    "lat_p50_ms",
    "lat_p99_ms",
    "server_cpu_util",
    "server_rss_kib",
    "other_cpu_util",
)


def summary_line(s: dict[str, Any]) -> dict[str, Any]:
    """One scenario and system as a flat JSON object: the main figure's median and range,
    the usual figures' medians, the ratio to the baseline, the status."""
    main, med = s["main"], s.get("median", {})
    out = {k: s[k] for k in ("scenario", "system", "unit", "status", "runs", "runs_ok", "main")}
    out[main] = med.get(main)
    out[f"{main}_range"] = s.get("range", {}).get(main)
    out.update({k: med[k] for k in LINE_FIGURES if k in med})
    out.update({k: v for k, v in med.items() if k.startswith(("kib_per_conn_at_", "bytes_per_", "cpu_us_per_"))})
    out["ratio"] = s.get("ratio")
    out["error"] = s.get("error")
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def make_chart(env: Env, results: Path, png: Path) -> Path:
    """Draw the chart here if matplotlib imports, else in the bench venv (installed on demand)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        py = ensure_venv(env, PY_CHART)
        subprocess.run(
            [str(py), "-m", "bench.chart", str(results), str(png)],
            cwd=str(env.repo),
            env={
                "PYTHONPATH": str(env.repo),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": "/usr/bin:/bin",
                "MPLBACKEND": "Agg",
                "HOME": str(Path.home()),
            },
            check=True,
            timeout=300,
        )
        return png
    from bench.chart import draw

    return draw(load_results(results), png)


def list_all() -> int:
    systems = catalog.systems()
    for sc in catalog.scenarios():
        names = [s.name for s in systems if sc.name in s.scenarios]
        print(f"{sc.name:8} {sc.title} [{sc.unit}; baseline {sc.baseline}{'; headline' if sc.headline else ''}]")
        print(f"{'':8} systems: {', '.join(names) or '(none)'}")
        print(f"{'':8} params: {json.dumps(dict(sc.params))}  quick: {json.dumps(dict(sc.quick))}")
    return 0


def report_only(args: argparse.Namespace, env: Env) -> int:
    doc = load_results(args.report)
    chart = None
    if not args.no_chart:
        chart = make_chart(env, args.report, args.chart or args.report.with_suffix(".png"))
        log(f"chart: {chart}")
    if args.readme:
        write_readme_section(args.readme, doc, chart, args.report)
        log(f"README section written into {args.readme}")
    else:
        sys.stderr.write(markdown(doc, chart=str(chart) if chart else None, source=str(args.report)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = Env(cache=cache_dir())
    if args.list:
        return list_all()
    if args.setup:
        print(json.dumps(setup_all(env), indent=1))
        return 0
    if args.report:
        return report_only(args, env)

    all_scenarios = {sc.name: sc for sc in catalog.scenarios()}
    unknown = [n for n in args.scenarios if n not in all_scenarios]
    if unknown:
        log(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(all_scenarios)}")
        return 2
    try:
        overrides = parse_set(args.set)
    except ValueError as exc:
        log(str(exc))
        return 2
    wanted = [all_scenarios[n] for n in args.scenarios] if args.scenarios else list(all_scenarios.values())
    only = [s.strip() for s in args.systems.split(",")] if args.systems else None
    systems = catalog.systems()
    if only:
        missing = [n for n in only if n not in {s.name for s in systems}]
        if missing:
            log(f"unknown system(s): {', '.join(missing)}; known: {', '.join(s.name for s in systems)}")
            return 2
    chosen = select(wanted, systems, only)
    if not chosen:
        log("nothing to run: no system takes part in the chosen scenarios")
        return 2
    params = {sc.name: sc.params_for(args.quick, overrides.get(sc.name)) for sc, _ in chosen}
    runs = {sc.name: args.runs or sc.runs(args.quick) for sc, _ in chosen}
    jobs = schedule([(sc, group, runs[sc.name]) for sc, group in chosen])

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM too: end the run's processes first
    machine = machine_description()
    stem = args.name or datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out_json = args.out / f"{stem}.json"
    log_dir = args.out / "logs" / stem
    log_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"{len(jobs)} runs: "
        + ", ".join(f"{sc.name} ({', '.join(s.name for s in g)} × {runs[sc.name]})" for sc, g in chosen)
    )
    log(f"logs of every process: {log_dir}")
    try:
        with file_lock(env.cache / "run.lock", what="the bench run lock", log=log):
            records, prepared = run_jobs(jobs, params, env, log_dir, measure_run, Progress(len(jobs)), machine)
    except Unavailable as exc:
        log(str(exc))
        return 1
    except KeyboardInterrupt:
        log("interrupted: every process of the run was stopped; no results written")
        return 130

    labels = {s.name: s.label for s in systems}
    options = {
        "quick": args.quick,
        "runs": runs,
        "systems": only,
        "overrides": overrides,
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    }
    doc = build_results([sc for sc, _ in chosen], labels, records, prepared, machine, params, options)
    write_json(out_json, doc)
    for s in doc["summaries"]:
        print(json.dumps(summary_line(s)), flush=True)
    chart = None
    if not args.no_chart:
        try:
            chart = make_chart(env, out_json, args.chart or out_json.with_suffix(".png"))
        except (Unavailable, subprocess.SubprocessError, OSError, ValueError, ImportError) as exc:
            log(f"no chart: {exc}")
    sys.stderr.write("\n" + markdown(doc, chart=str(chart) if chart else None, source=str(out_json)) + "\n")
    log(f"results: {out_json}" + (f"\nchart: {chart}" if chart else ""))
    if args.readme:
        write_readme_section(args.readme, doc, chart, out_json)
        log(f"README section written into {args.readme}")
    bad = [r for r in records if r.get("status") != "ok"]
    if bad:
        log(
            f"{len(bad)} of {len(records)} runs not ok: "
            + ", ".join(sorted({f"{r['scenario']}/{r['system']}: {r['status']}" for r in bad}))
        )
    return 1 if (args.strict and bad) else 0
