"""From run records to results: one summary per scenario and system (medians, ranges,
ratios to the scenario's baseline), the results document written as JSON, the markdown
tables, and the generated performance section of a README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.scenarios import Scenario
from bench.stats import finite, ratio_of_medians, spread

FORMAT = "tickwire-bench/1"
START = "<!-- bench:start -->"
END = "<!-- bench:end -->"

# Fields of a run record that are bookkeeping, not figures.
NOT_FIGURES = {"run", "elapsed_s"}


def _is_figure(k: str, v: Any) -> bool:
    return k not in NOT_FIGURES and bool(finite([v]))


def summarize(
    scenario: Scenario,
    system: str,
    records: Sequence[Mapping[str, Any]],
    baseline_records: Sequence[Mapping[str, Any]] | None,
    label: str = "",
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One object for one scenario and one system. `records` are this system's runs in
    run order; `baseline_records` the baseline system's (None for the baseline itself)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if ok and len(ok) == len(records):
        status = "ok"
    elif ok:
        status = "partial"
    else:
        status = next((r.get("status") for r in records if r.get("status") != "ok"), "failed")
    names = sorted({k for r in ok for k, v in r.items() if _is_figure(k, v)})
    median, rng = {}, {}
    for k in names:
        s = spread(r.get(k) for r in ok)
        if s is not None:
            median[k], rng[k] = s.median, [s.min, s.max]
    ratio = None
    if baseline_records is not None and ok:
        by_run = {r["run"]: r for r in baseline_records if r.get("status") == "ok"}
        mine = {r["run"]: r for r in ok}
        runs = sorted(set(by_run) | set(mine))
        r = ratio_of_medians(
            [mine.get(i, {}).get(scenario.main) for i in runs], [by_run.get(i, {}).get(scenario.main) for i in runs]
        )
        if r is not None:
            ratio = {"to": scenario.baseline, "metric": scenario.main, **r.as_dict()}
    errors = [r["error"] for r in records if r.get("error")]
    return {
        "scenario": scenario.name,
        "system": system,
        "label": label or system,
        "unit": scenario.unit,
        "status": status,
        "runs": len(records),
        "runs_ok": len(ok),
        "main": scenario.main,
        scenario.main: median.get(scenario.main),
        "median": median,
        "range": rng,
        "ratio": ratio,
        "error": errors[0] if errors else None,
        "versions": dict(versions or {}),
    }


def also_ratios(
    scenario: Scenario, system: str, mine: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The scenario's further ratios (`also_vs`) for one system: "<figure> vs <system>" ->
    the ratio of medians with its range over runs paired by round, as for the main one."""
    out: dict[str, Any] = {}
    ok = {r["run"]: r for r in mine if r.get("status") == "ok"}
    for figure, other in scenario.also_vs:
        if other == system:
            continue
        theirs = {
            r["run"]: r for r in records if r["scenario"] == scenario.name and r["system"] == other and r.get("status") == "ok"
        }
        runs = sorted(set(ok) | set(theirs))
        r = ratio_of_medians([ok.get(i, {}).get(figure) for i in runs], [theirs.get(i, {}).get(figure) for i in runs])
        if r is not None:
            out[f"{figure} vs {other}"] = {"to": other, "metric": figure, **r.as_dict()}
    return out


def build_results(
    scenarios: Sequence[Scenario],
    labels: Mapping[str, str],
    records: Sequence[Mapping[str, Any]],
    prepared: Mapping[str, Mapping[str, Any]],
    machine: Mapping[str, Any],
    params: Mapping[str, Mapping[str, Any]],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The results document: what ran, on what, the summaries and every raw run."""
    summaries = []
    for sc in scenarios:
        systems = list(dict.fromkeys(r["system"] for r in records if r["scenario"] == sc.name))
        base = [r for r in records if r["scenario"] == sc.name and r["system"] == sc.baseline]
        for name in systems:
            mine = sorted(
                (r for r in records if r["scenario"] == sc.name and r["system"] == name), key=lambda r: r["run"]
            )
            s = summarize(
                sc,
                name,
                mine,
                None if name == sc.baseline or not base else base,
                labels.get(name, name),
                prepared.get(name, {}).get("versions"),
            )
            s["machine"] = dict(machine)
            s["params"] = dict(params.get(sc.name, {}))
            s["also_vs"] = also_ratios(sc, name, mine, records)
            summaries.append(s)
    return {
        "format": FORMAT,
        "date": machine.get("date"),
        "machine": dict(machine),
        "options": dict(options),
        "scenarios": [
            {
                "name": sc.name,
                "title": sc.title,
                "kind": sc.kind,
                "unit": sc.unit,
                "main": sc.main,
                "main_label": sc.main_label,
                "baseline": sc.baseline,
                "columns": list(sc.columns),
                "also_vs": [list(a) for a in sc.also_vs],
                "what": sc.describe(params.get(sc.name, sc.params)),
                "params": dict(params.get(sc.name, {})),
            }
            for sc in scenarios
            if any(r["scenario"] == sc.name for r in records)
        ],
        "systems": {
            name: {"label": labels.get(name, name), **{k: v for k, v in info.items()}}
            for name, info in prepared.items()
        },
        "summaries": summaries,
        "runs": [dict(r) for r in records],
    }


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def load_results(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} results file")
    return doc


# ---------------------------------------------------------------------- markdown


def fmt(v: Any) -> str:
    if not finite([v]):
        return "—"
    v = float(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_range(median: Any, rng: Sequence[Any] | None) -> str:
    if not finite([median]):
        return "—"
    if not rng or rng[0] == rng[1]:
        return fmt(median)
    return f"{fmt(median)} ({fmt(rng[0])}–{fmt(rng[1])})"


def _plural(unit: str) -> str:
    if unit.endswith("y"):
        return unit[:-1] + "ies"
    return unit + ("es" if unit.endswith("s") else "s")


def column_header(name: str, sc: Mapping[str, Any]) -> str:
    unit = sc["unit"]
    fixed = {
        "cpu_us_per_unit": f"server CPU µs / {unit}",
        "units_per_s": f"{_plural(unit)} / s",
        "lat_p50_ms": "p50 ms",
        "lat_p99_ms": "p99 ms",
        "server_cpu_util": "server cores",
        "load_cpu_util": "load cores",
        "cpu_us_per_publish": "server CPU µs / publish",
        "cpu_us_per_frame": "server CPU µs / frame",
        "bytes_per_entity_update": "B / entity update",
        "bytes_per_client_tick": "B / client / tick",
        "out_us_per_tick": "out µs / tick",
        "in_us_per_tick": "in µs / tick",
        "frames_per_client_tick": "frames / client / tick",
        "kib_per_conn": "KiB / connection",
        "server_rss_kib": "server RSS KiB",
    }
    if name in fixed:
        return fixed[name]
    for prefix, head in (
        ("kib_per_conn_at_", "KiB / conn at "),
        ("rss_kib_at_", "RSS KiB at "),
        ("pss_kib_per_conn_at_", "PSS KiB / conn at "),
    ):
        if name.startswith(prefix):
            n = name[len(prefix) :]
            return head + (f"{int(n):,}" if n.isdigit() else n)
    return name


def scenario_table(sc: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: one row per system of one scenario."""
    main = sc["main"]
    main_head = column_header(main, sc)
    if sc["kind"] == "memory" and sc["params"].get("steps"):
        main_head = f"KiB / conn at {int(sc['params']['steps'][-1]):,}"
    cols = [c for c in sc["columns"] if c != main]
    merged_latency = "lat_p50_ms" in cols and "lat_p99_ms" in cols
    heads = ["system", main_head, f"vs {sc['baseline']}" if sc.get("baseline") else "ratio"]
    also = [f"{fig} vs {other}" for fig, other in sc.get("also_vs", [])]
    heads += [f"{column_header(fig, sc)} vs {other}" for fig, other in sc.get("also_vs", [])]
    for c in cols:
        if merged_latency and c == "lat_p99_ms":
            continue
        heads.append("p50 / p99 ms" if merged_latency and c == "lat_p50_ms" else column_header(c, sc))
    heads.append("runs")
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
    for s in summaries:
        med, rng = s.get("median", {}), s.get("range", {})
        label = s.get("label") or s["system"]
        if s["status"] not in ("ok", "partial"):
            reason = (s.get("error") or "").splitlines()[0] if s.get("error") else ""
            reason = reason[:120] + ("…" if len(reason) > 120 else "")
            cells = (
                [label, f"{s['status']}" + (f": {reason}" if reason else "")]
                + [""] * (len(heads) - 3)
                + [f"0/{s['runs']}"]
            )
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        if s["system"] == sc.get("baseline"):
            ratio = "1 (baseline)"
        elif s.get("ratio"):
            r = s["ratio"]
            ratio = f"{r['ratio']:.2f}×" + (f" ({r['min']:.2f}–{r['max']:.2f})" if r.get("pairs", 0) > 1 else "")
        else:
            ratio = "—"
        cells = [label, fmt_range(med.get(main), rng.get(main)), ratio]
        for key in also:
            r = (s.get("also_vs") or {}).get(key)
            if r is None:
                cells.append("1 (itself)" if key.endswith(" vs " + s["system"]) else "—")
            else:
                cells.append(f"{r['ratio']:.2f}×" + (f" ({r['min']:.2f}–{r['max']:.2f})" if r.get("pairs", 0) > 1 else ""))
        for c in cols:
            if merged_latency and c == "lat_p99_ms":
                continue
            if merged_latency and c == "lat_p50_ms":
                cells.append(f"{fmt(med.get('lat_p50_ms'))} / {fmt(med.get('lat_p99_ms'))}")
            else:
                cells.append(fmt(med.get(c)))
        cells.append(f"{s['runs_ok']}/{s['runs']}")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def machine_line(m: Mapping[str, Any]) -> str:
    parts = [str(m.get("cpu_model", "unknown CPU")), f"{m.get('cores')} cores"]
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']} GiB")
    parts.append(f"{m.get('os', 'Linux')} {m.get('kernel', '')}".strip())
    parts.append(str(m.get("python", "")))
    if m.get("node"):
        parts.append(f"Node {m['node']}")
    return ", ".join(p for p in parts if p)


def markdown(doc: Mapping[str, Any], chart: str | None = None, source: str | None = None) -> str:
    """The performance section: date and machine, a table per scenario, the chart."""
    opts = doc.get("options", {})
    date = (doc.get("date") or "")[:10]
    out = [
        f"_Generated by `python -m bench` from `{source}`_" if source else "_Generated by `python -m bench`_",
        "",
        f"Measured on {date} on {machine_line(doc.get('machine', {}))}.",
        "Figures are medians over runs with their range in brackets; systems ran interleaved"
        " run by run; a ratio is the ratio of medians, with the range of the ratios of runs"
        " paired by round. Server CPU is user + system time of every server process; the"
        " load generator is a separate process on the same cores."
        + (" **Quick run: smoke-test figures, not for comparison.**" if opts.get("quick") else ""),
    ]
    by = {}
    for s in doc.get("summaries", []):
        by.setdefault(s["scenario"], []).append(s)
    for sc in doc.get("scenarios", []):
        rows = by.get(sc["name"], [])
        if not rows:
            continue
        out += [
            "",
            f"**{sc['title']}** ({sc['what']})" if sc.get("what") else f"**{sc['title']}**",
            "",
            scenario_table(sc, rows),
        ]
    if chart:
        out += ["", f"![Benchmark chart: lower is better]({chart})"]
    return "\n".join(out) + "\n"


def replace_section(text: str, body: str) -> str:
    """`text` with the part between the bench markers replaced by `body`; the markers and
    body are appended when the text has none."""
    i, j = text.find(START), text.find(END)
    block = f"{START}\n{body.rstrip()}\n{END}"
    if i != -1 and j > i:
        return text[:i] + block + text[j + len(END) :]
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block + "\n"


def write_readme_section(
    readme: Path, doc: Mapping[str, Any], chart: Path | None = None, source: Path | None = None
) -> None:
    """Write the generated section into `readme` (created if missing). The chart and the
    source are referred to relative to the README's folder."""
    readme = Path(readme)
    base = readme.resolve().parent

    def rel(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), base)

    body = markdown(doc, chart=rel(chart) if chart else None, source=rel(source) if source else None)
    text = readme.read_text() if readme.exists() else ""
    readme.write_text(replace_section(text, body))
