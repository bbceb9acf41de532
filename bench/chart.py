"""The chart: one panel per scenario, one bar per system (the median of the scenario's
main figure, the line across it the range of the runs), lower is better.

matplotlib is not a dependency of Tickwire: the harness installs it into the bench venv
on first use and runs this module there (`python -m bench.chart RESULTS PNG`), unless the
current interpreter already has it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BASELINE_COLOR = "#9aa5b1"
COLORS = {"ok": "#2f6fb0", "partial": "#d08c2a"}
TICKWIRE_COLOR = "#c2410c"


def _label_value(v: float) -> str:
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}"


def draw(doc: Mapping[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, list[Mapping[str, Any]]] = {}
    for s in doc.get("summaries", []):
        by.setdefault(s["scenario"], []).append(s)
    scenarios = [sc for sc in doc.get("scenarios", []) if by.get(sc["name"])]
    if not scenarios:
        raise ValueError("the results hold no scenario to draw")
    ncols = 1 if len(scenarios) == 1 else 2
    nrows = math.ceil(len(scenarios) / ncols)
    rows_h = []
    for r in range(nrows):
        chunk = scenarios[r * ncols : (r + 1) * ncols]
        rows_h.append(max(len(by[sc["name"]]) for sc in chunk) * 0.42 + 1.1)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(7 * ncols, sum(rows_h) + 0.9),
        gridspec_kw={"height_ratios": rows_h},
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(scenarios) :]:
        ax.set_visible(False)
    for i, (ax, sc) in enumerate(zip(axes.flat, scenarios)):
        row = scenarios[(i // ncols) * ncols : (i // ncols + 1) * ncols]
        _panel(ax, sc, by[sc["name"]], slots=max(len(by[x["name"]]) for x in row))
    m = doc.get("machine", {})
    quick = " — quick run (smoke test)" if doc.get("options", {}).get("quick") else ""
    fig.suptitle(
        f"Tickwire bench, {(doc.get('date') or '')[:10]}: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, "
        f"Linux {m.get('kernel', '?')}{quick}\nmedian of runs, line = range of runs; lower is better",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _panel(ax, sc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], slots: int) -> None:
    """One scenario's bars; `slots` rows of room, so bars are as thick in every panel."""
    main = sc["main"]
    labels, values, lows, highs, colors, notes = [], [], [], [], [], []
    for s in rows:
        labels.append(s.get("label") or s["system"])
        v = s.get("median", {}).get(main)
        ok = s["status"] in ("ok", "partial") and isinstance(v, (int, float))
        if ok:
            lo, hi = s.get("range", {}).get(main, [v, v])
            values.append(v)
            lows.append(v - lo)
            highs.append(hi - v)
            if s["system"] == sc.get("baseline"):
                colors.append(BASELINE_COLOR)
                notes.append(f"{_label_value(v)} (baseline)")
            else:
                colors.append(TICKWIRE_COLOR if s["system"].startswith("tickwire") else COLORS[s["status"]])
                r = s.get("ratio")
                notes.append(_label_value(v) + (f"  ×{r['ratio']:.2f}" if r else ""))
        else:
            values.append(0)
            lows.append(0)
            highs.append(0)
            colors.append("white")
            notes.append(s["status"])
    y = list(range(len(rows)))
    ax.barh(
        y,
        values,
        height=0.7,
        xerr=[lows, highs],
        color=colors,
        edgecolor="#444",
        linewidth=0.5,
        error_kw={"elinewidth": 1, "capsize": 3},
    )
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(max(slots, len(rows)) - 0.5, -0.5)
    top = max([v + h for v, h in zip(values, highs)] + [1e-9])
    ax.set_xlim(0, top * 1.45)
    for yi, v, h, note in zip(y, values, highs, notes):
        ax.text(v + h + top * 0.02, yi, note, va="center", fontsize=8)
    ax.set_title(sc["title"], fontsize=9, loc="left")
    ax.set_xlabel(sc.get("main_label") or main, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.chart RESULTS.json OUT.png", file=sys.stderr)
        return 2
    draw(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
