"""The benchmark harness's own logic (bench/): statistics, run order, CPU accounting of a
process tree, the results' shape, the README section, and one real run of a toy system
over 127.0.0.1; Tickwire's load generator: its counts against the engine's decoder, and
one tiny run against a real Tickwire server. No load, no timed assertions; the anchors
are not needed here (tests/test_bench_quick.py runs them)."""

from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import IN_CI

from bench import cli
from bench.measure import Run, RunFailed, counter_deltas, measure_run, memory_metrics, window_metrics
from bench.proc import CpuTimes, machine_description, parse_stat, tree_cpu, tree_memory, tree_pids
from bench.process import ChildError, ProcessSpec
from bench.report import (
    END,
    START,
    build_results,
    load_results,
    markdown,
    replace_section,
    summarize,
    write_json,
    write_readme_section,
)
from bench.runner import MAX_FAILURES_IN_A_ROW, Progress, run_jobs, schedule, select
from bench.scenarios import Derived, Scenario
from bench.stats import paired_ratios, ratio_of_medians, spread
from bench.system import Env, RunContext, System, Unavailable
from bench.tickwire_frames import ClientFrames, DeliveryCounter, acks_of, scan_acks
from engine._generated import protocol as P
from engine.codec import PackedCodec
from engine.packed import DecodeError

WINDOW = Scenario(
    name="toy",
    title="Toy scenario",
    kind="window",
    unit="ping",
    params={"warm_s": 0.2, "window_s": 0.4},
    baseline="a",
    derived=(Derived("bytes_per_ping", "bytes", "units"), Derived("cpu_us_per_publish", "cpu_us", "published")),
)
MEMORY = Scenario(
    name="mem",
    title="Toy memory",
    kind="memory",
    unit="connection",
    params={"steps": [0, 2], "settle_s": 0},
    baseline="a",
    main="kib_per_conn",
)


# ---------------------------------------------------------------------- statistics


def test_spread_ignores_what_is_not_a_number():
    s = spread([3.0, None, 1.0, float("nan"), True, 2.0])
    assert (s.median, s.min, s.max, s.n) == (2.0, 1.0, 3.0, 3)
    assert spread([None, "x"]) is None


def test_ratio_of_medians_with_the_range_of_paired_rounds():
    r = ratio_of_medians([10.0, 12.0, 11.0], [5.0, 5.0, 6.0])
    assert r.median_ratio == pytest.approx(11.0 / 5.0)
    assert (r.min, r.max, r.pairs) == (pytest.approx(11.0 / 6.0), pytest.approx(12.0 / 5.0), 3)
    # a failed round (None) drops out of the pairs, not out of the medians' inputs
    assert paired_ratios([2.0, None, 4.0], [1.0, 1.0, 0.0]) == [2.0]
    assert ratio_of_medians([1.0], [0.0]) is None


# ---------------------------------------------------------------------- run order


class Toy(System):
    """A system that is never started: for run order and statuses."""

    def __init__(self, name: str, scenarios=("toy",), broken: str | None = None):
        self.name, self.label, self.scenarios, self.broken = name, name.upper(), frozenset(scenarios), broken

    def prepare(self, env):
        if self.broken:
            raise Unavailable(self.broken)
        return {"toy": "1.0"}

    def server(self, ctx):
        raise AssertionError("not started in these tests")

    def load(self, ctx):
        raise AssertionError("not started in these tests")


def test_systems_are_interleaved_run_by_run_scenario_by_scenario():
    a, b, c = Toy("a", ("toy", "mem")), Toy("b"), Toy("c", ("toy", "mem"))
    plan = select([WINDOW, MEMORY], [a, b, c], None)
    assert [(sc.name, [s.name for s in group]) for sc, group in plan] == [("toy", ["a", "b", "c"]), ("mem", ["a", "c"])]
    jobs = schedule([(sc, group, 3 if sc is WINDOW else 2) for sc, group in plan])
    order = [(j.scenario.name, j.system.name, j.run) for j in jobs]
    assert order == [
        ("toy", "a", 0), ("toy", "b", 0), ("toy", "c", 0),
        ("toy", "a", 1), ("toy", "b", 1), ("toy", "c", 1),
        ("toy", "a", 2), ("toy", "b", 2), ("toy", "c", 2),
        ("mem", "a", 0), ("mem", "c", 0), ("mem", "a", 1), ("mem", "c", 1),
    ]  # fmt: skip
    assert select([WINDOW], [a, b, c], ["b"])[0][1] == [b]


def test_run_jobs_reports_every_system_whatever_happens(tmp_path):
    a, b, gone = Toy("a"), Toy("b"), Toy("gone", broken="node is not installed")
    calls = []

    def measure(system, scenario, params, run, env, log_dir):
        calls.append((system.name, run))
        if system.name == "b":
            raise ChildError("server exited with code 1")
        return {
            "cpu_us_per_unit": 10.0 + run,
            "user_us_per_unit": 6.0,
            "sys_us_per_unit": 4.0 + run,
            "units_per_s": 1000.0,
        }

    runs = MAX_FAILURES_IN_A_ROW + 2
    jobs = schedule([(WINDOW, [a, b, gone], runs)])
    stream = io.StringIO()
    records, prepared = run_jobs(
        jobs, {"toy": {}}, Env(cache=tmp_path), tmp_path, measure, Progress(len(jobs), stream), {"cpu_model": "toy"}
    )
    expected = []
    for i in range(runs):
        expected += [("a", i)] + ([("b", i)] if i < MAX_FAILURES_IN_A_ROW else [])
    assert calls == expected  # "gone" is never started; "b" stops after its failures
    status = {(r["system"], r["run"]): r["status"] for r in records}
    assert [status[("a", i)] for i in range(runs)] == ["ok"] * runs
    assert [status[("b", i)] for i in range(runs)] == ["failed"] * MAX_FAILURES_IN_A_ROW + ["skipped"] * (
        runs - MAX_FAILURES_IN_A_ROW
    )
    assert [status[("gone", i)] for i in range(runs)] == ["unavailable"] * runs
    assert all(r["machine"] == {"cpu_model": "toy"} and "error" in r for r in records if r["status"] != "ok")
    assert prepared["gone"] == {"status": "unavailable", "versions": {}, "error": "node is not installed"}
    assert prepared["a"]["versions"] == {"toy": "1.0"}
    assert f"{len(jobs)}/{len(jobs)}" in stream.getvalue()


def test_progress_line_counts_and_estimates():
    clock = iter([0.0, 0.0, 30.0]).__next__
    p = Progress(4, io.StringIO(), width=8, clock=clock)
    assert p.line("x").startswith("[........] 0/4 x (elapsed 0:00")
    p.advance()
    assert p.line("fanout") == "[##......] 1/4 fanout (elapsed 0:30, about 1:30 left)"


# ---------------------------------------------------------------------- figures


def test_window_metrics_from_raw_readings():
    before = {"t": 10.0, "units": 1000, "bytes": 5000, "published": 10, "open": 5}
    after = {
        "t": 12.0,
        "units": 5000,
        "bytes": 25000,
        "published": 50,
        "open": 5,
        "lat_p50_ms": 3.0,
        "lat_p99_ms": 9.0,
        "lat_n": 40,
    }
    m = window_metrics(WINDOW, CpuTimes(0.03, 0.01), 2.5, before, after, CpuTimes(0.5, 0.0), busy_s=1.6)
    assert m["units"] == 4000
    assert m["cpu_us_per_unit"] == pytest.approx(10.0)
    assert (m["user_us_per_unit"], m["sys_us_per_unit"]) == (pytest.approx(7.5), pytest.approx(2.5))
    assert m["units_per_s"] == pytest.approx(2000.0)  # the load's own clock: 4000 in 2.0 s
    assert m["server_cpu_util"] == pytest.approx(0.016)
    assert m["load_cpu_util"] == pytest.approx(0.2)
    assert m["other_cpu_util"] == pytest.approx((1.6 - 0.04 - 0.5) / 2.5)
    assert m["bytes_per_ping"] == pytest.approx(5.0)
    assert m["cpu_us_per_publish"] == pytest.approx(1000.0)
    assert (m["lat_p50_ms"], m["lat_p99_ms"]) == (3.0, 9.0)
    assert m["counts"] == {"units": 4000, "bytes": 20000, "published": 40, "open": 0}
    with pytest.raises(RunFailed):
        window_metrics(WINDOW, CpuTimes(1, 0), 1.0, before, before)


def test_window_metrics_with_the_servers_counters_and_gauges():
    sc = Scenario(
        name="room",
        title="Toy room",
        kind="window",
        unit="tick",
        params={},
        derived=(Derived("out_us_per_tick", "server.out_cpu_us", "units"), Derived("b_per_frame", "bytes", "messages")),
    )
    load0 = {"t": 1.0, "units": 10, "messages": 100, "bytes": 1000}
    load1 = {"t": 2.0, "units": 30, "messages": 300, "bytes": 5000, "gauges": {"frame_bytes_p50": 21.5, "x": "no"}}
    server0 = {"out_cpu_us": 1000.0, "in_cpu_us": 50.0, "gauges": {"view_frac_seen": 0.5}}
    server1 = {"out_cpu_us": 9000.0, "in_cpu_us": 250.0, "gauges": {"view_frac_seen": 0.1}}
    m = window_metrics(sc, CpuTimes(0.01, 0.0), 1.0, load0, load1, server_before=server0, server_after=server1)
    assert m["out_us_per_tick"] == pytest.approx(400.0)  # 8,000 µs over 20 ticks
    assert m["b_per_frame"] == pytest.approx(20.0)
    assert m["server_counters"] == {"out_cpu_us": 8000.0, "in_cpu_us": 200.0}
    assert m["frame_bytes_p50"] == 21.5 and m["view_frac_seen"] == 0.1 and "x" not in m  # as read at the end
    # Without the server's stats, a figure that needs them is left out, not wrong.
    assert "out_us_per_tick" not in window_metrics(sc, CpuTimes(0.01, 0.0), 1.0, load0, load1)


def test_counter_deltas_skip_latency_time_and_non_numbers():
    assert counter_deltas(
        {"a": 1, "t": 1, "lat_n": 1, "s": "x", "b": True}, {"a": 4, "t": 9, "lat_n": 5, "s": "y", "b": False, "new": 3}
    ) == {"a": 3}


def test_memory_metrics_per_connection_relative_to_the_first_step():
    m = memory_metrics(
        [
            {"conns": 0, "rss_kib": 1000, "pss_kib": 900},
            {"conns": 1000, "rss_kib": 15000, "pss_kib": 13900},
            {"conns": 5000, "rss_kib": 73500},
        ]
    )
    assert m["rss_kib_at_0"] == 1000
    assert m["kib_per_conn_at_1000"] == pytest.approx(14.0)
    assert m["pss_kib_per_conn_at_1000"] == pytest.approx(13.0)
    assert m["kib_per_conn_at_5000"] == m["kib_per_conn"] == pytest.approx(14.5)
    with pytest.raises(RunFailed):
        memory_metrics([{"conns": 0, "rss_kib": 1}])


# ---------------------------------------------------------------------- /proc


def test_parse_stat_with_a_name_full_of_spaces_and_parentheses():
    fields = ["S", "41", "42", "42", "0", "-1", "4194560", "0", "0", "0", "0", "250", "50", "30", "20"] + ["0"] * 37
    st = parse_stat(f"4242 (my (odd) name) {' '.join(fields)}\n")
    assert (st.pid, st.ppid) == (4242, 41)
    tck = os.sysconf("SC_CLK_TCK")
    assert st.own == CpuTimes(250 / tck, 50 / tck)
    assert st.reaped == CpuTimes(30 / tck, 20 / tck)


# Burns CPU for a fixed amount of work (not a time), prints its own CPU time, and, when
# told to stay, waits for its stdin to close.
BURN_SCRIPT = textwrap.dedent(
    """
    import os, sys
    x = 0
    for i in range(int(sys.argv[1])):
        x += i
    t = os.times()
    print(t.user + t.system, flush=True)
    if "stay" in sys.argv:
        sys.stdin.readline()
    """
)

# On "go": runs one burner to its end (and so reaps it), then starts a second that stays.
TREE_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys
    burn, work = sys.argv[1], sys.argv[2]
    print("started", flush=True)
    sys.stdin.readline()
    done = subprocess.run([sys.executable, burn, work], capture_output=True, text=True)
    print("reaped", done.stdout.strip(), flush=True)
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    alive = subprocess.Popen([sys.executable, burn, work, "stay"], **pipes)
    print("alive", alive.pid, alive.stdout.readline().strip(), flush=True)
    sys.stdin.readline()
    alive.stdin.close()
    alive.wait()
    """
)


def test_tree_cpu_counts_live_descendants_and_reaped_children(tmp_path):
    (tmp_path / "burn.py").write_text(BURN_SCRIPT)
    argv = [sys.executable, "-c", TREE_SCRIPT, str(tmp_path / "burn.py"), "4000000"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "started"
        before = tree_cpu(p.pid)
        assert before.processes == 1
        p.stdin.write("go\n")
        p.stdin.flush()
        reaped_line = p.stdout.readline().split()
        alive_line = p.stdout.readline().split()
        reaped_cpu, alive_pid, alive_cpu = float(reaped_line[1]), int(alive_line[1]), float(alive_line[2])
        after = tree_cpu(p.pid)
        assert alive_pid in tree_pids(p.pid)
        assert after.processes == 2
        assert reaped_cpu > 0.05 and alive_cpu > 0.05  # enough work to dwarf the 10 ms ticks
        # Both children's CPU is in the window: the reaped one through the parent's cutime.
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert (after.cpu - before.cpu).total >= reaped_cpu + alive_cpu - 4 * tick
        mem = tree_memory(p.pid)
        assert mem["processes"] == 2 and mem["rss_kib"] > 0
    finally:
        p.stdin.close()
        p.wait(timeout=30)


def test_machine_description_names_what_was_measured_on():
    m = machine_description()
    assert {"cpu_model", "cores", "kernel", "python", "node", "date"} <= set(m)
    assert m["cores"] >= 1 and m["kernel"] and m["date"][:2] == "20"


# ---------------------------------------------------------------------- results and README


def _records():
    recs = []
    for run in range(3):
        recs.append(
            {
                "scenario": "toy",
                "system": "a",
                "run": run,
                "status": "ok",
                "cpu_us_per_unit": 10.0 + run,
                "units_per_s": 100.0,
                "elapsed_s": 1.0,
            }
        )
        recs.append(
            {
                "scenario": "toy",
                "system": "b",
                "run": run,
                "status": "ok" if run != 1 else "failed",
                "cpu_us_per_unit": 20.0 + 4 * run,
                "units_per_s": 90.0,
            }
        )
        recs.append(
            {"scenario": "toy", "system": "gone", "run": run, "status": "unavailable", "error": "npm is missing"}
        )
    return recs


def _doc():
    machine = {
        "cpu_model": "Toy CPU",
        "cores": 2,
        "kernel": "6.0",
        "os": "Linux",
        "python": "CPython 3.11.7",
        "node": "v20",
        "date": "2026-11-25T12:00:00+00:00",
    }
    prepared = {
        "a": {"status": "ok", "versions": {"a": "1"}},
        "b": {"status": "ok", "versions": {}},
        "gone": {"status": "unavailable", "versions": {}, "error": "npm is missing"},
    }
    return build_results(
        [WINDOW],
        {"a": "System A", "b": "System B"},
        _records(),
        prepared,
        machine,
        {"toy": {"warm_s": 1}},
        {"quick": False},
    )


def test_results_hold_one_summary_per_scenario_and_system_plus_every_run(tmp_path):
    doc = _doc()
    path = tmp_path / "r.json"
    write_json(path, doc)
    back = load_results(path)
    assert back == json.loads(json.dumps(doc))
    assert [(s["scenario"], s["system"], s["status"]) for s in back["summaries"]] == [
        ("toy", "a", "ok"),
        ("toy", "b", "partial"),
        ("toy", "gone", "unavailable"),
    ]
    a, b, gone = back["summaries"]
    assert a["cpu_us_per_unit"] == a["median"]["cpu_us_per_unit"] == 11.0
    assert a["range"]["cpu_us_per_unit"] == [10.0, 12.0]
    assert a["ratio"] is None and a["versions"] == {"a": "1"} and a["machine"]["cpu_model"] == "Toy CPU"
    assert "run" not in a["median"] and "elapsed_s" not in a["median"]
    assert (b["runs"], b["runs_ok"], b["median"]["cpu_us_per_unit"]) == (3, 2, 24.0)
    # ratio of medians 24/11; per-round pairs only where both ran: 20/10 and 28/12
    assert b["ratio"]["ratio"] == pytest.approx(24 / 11)
    assert (b["ratio"]["min"], b["ratio"]["max"], b["ratio"]["pairs"]) == (
        pytest.approx(2.0),
        pytest.approx(28 / 12),
        2,
    )
    assert gone["error"] == "npm is missing" and gone["cpu_us_per_unit"] is None
    assert len(back["runs"]) == 9 and back["systems"]["gone"]["status"] == "unavailable"
    assert back["scenarios"][0]["name"] == "toy" and back["machine"]["cores"] == 2
    with pytest.raises(ValueError):
        (tmp_path / "other.json").write_text("{}")
        load_results(tmp_path / "other.json")


def test_stdout_line_of_a_summary_is_flat():
    line = cli.summary_line(_doc()["summaries"][1])
    assert line["scenario"] == "toy" and line["system"] == "b" and line["status"] == "partial"
    assert line["main"] == "cpu_us_per_unit" and line["cpu_us_per_unit"] == 24.0
    assert line["cpu_us_per_unit_range"] == [20.0, 28.0] and line["units_per_s"] == 90.0
    assert line["ratio"]["to"] == "a" and "machine" not in line


def test_summary_of_a_system_that_never_ran():
    s = summarize(
        WINDOW, "x", [{"scenario": "toy", "system": "x", "run": 0, "status": "failed", "error": "boom"}], None
    )
    assert (s["status"], s["runs_ok"], s["median"], s["error"]) == ("failed", 0, {}, "boom")


def test_markdown_has_the_date_the_machine_a_table_per_scenario_and_the_chart():
    text = markdown(_doc(), chart="results/r.png", source="results/r.json")
    assert "2026-11-25" in text and "Toy CPU, 2 cores" in text and "Node v20" in text
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| system |"))
    assert lines[head] == "| system | server CPU µs / ping | vs a | runs |"
    assert lines[head + 2] == "| System A | 11.0 (10.0–12.0) | 1 (baseline) | 3/3 |"
    assert lines[head + 3] == "| System B | 24.0 (20.0–28.0) | 2.18× (2.00–2.33) | 2/3 |"
    assert lines[head + 4].startswith("| gone | unavailable: npm is missing |")
    assert "![Benchmark chart: lower is better](results/r.png)" in text


def test_a_scenario_compares_a_further_figure_with_another_system():
    sc = Scenario(
        name="room", title="Toy room", kind="window", unit="tick", params={}, baseline="a",
        columns=("out_us_per_tick",), also_vs=(("out_us_per_tick", "floor"),),
    )

    def rec(system, run, cpu, out):
        return {"scenario": "room", "system": system, "run": run, "status": "ok", "cpu_us_per_unit": cpu,
                "out_us_per_tick": out}

    records = [rec("a", 0, 10.0, 4.0), rec("floor", 0, 5.0, 2.0), rec("a", 1, 12.0, 6.0), rec("floor", 1, 5.0, 2.5)]
    doc = build_results([sc], {"a": "A", "floor": "Floor"}, records, {}, {"date": "2026-11-25"}, {}, {})
    a, floor = doc["summaries"]
    r = a["also_vs"]["out_us_per_tick vs floor"]
    assert r["ratio"] == pytest.approx(5.0 / 2.25) and (r["min"], r["max"]) == (pytest.approx(2.0), pytest.approx(2.4))
    assert floor["also_vs"] == {}
    lines = markdown(doc).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| system |"))
    assert lines[head] == "| system | server CPU µs / tick | vs a | out µs / tick vs floor | out µs / tick | runs |"
    assert lines[head + 2] == "| A | 11.0 (10.0–12.0) | 1 (baseline) | 2.22× (2.00–2.40) | 5.00 | 2/2 |"
    assert lines[head + 3].startswith("| Floor | 5.00 | 0.45× (0.42–0.50) | 1 (itself) |")


def test_readme_section_goes_between_the_markers_and_nowhere_else(tmp_path):
    readme = tmp_path / "docs" / "README.md"
    readme.parent.mkdir()
    chart, source = tmp_path / "bench" / "results" / "r.png", tmp_path / "bench" / "results" / "r.json"
    write_readme_section(readme, _doc(), chart, source)  # no file yet: created
    first = readme.read_text()
    assert first.startswith(START) and first.rstrip().endswith(END)
    assert "](../bench/results/r.png)" in first and "`../bench/results/r.json`" in first

    readme.write_text(
        "# Tickwire\n\nIntro.\n\n## Performance\n\n" + START + "\nold table\n" + END + "\n\n## License\n\nMIT\n"
    )
    write_readme_section(readme, _doc(), chart, source)
    text = readme.read_text()
    assert text.startswith("# Tickwire\n\nIntro.\n\n## Performance\n\n" + START + "\n")
    assert text.endswith(END + "\n\n## License\n\nMIT\n")
    assert "old table" not in text and text.count(START) == 1 and text.count(END) == 1
    write_readme_section(readme, _doc(), chart, source)
    assert readme.read_text() == text  # idempotent

    assert replace_section("no markers", "body") == "no markers\n\n" + START + "\nbody\n" + END + "\n"


def test_report_command_rewrites_the_section_from_a_results_file(tmp_path):
    results = tmp_path / "r.json"
    write_json(results, _doc())
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    assert cli.main(["--report", str(results), "--readme", str(readme), "--no-chart"]) == 0
    assert readme.read_text().startswith("# Title\n\n" + START) and "System B" in readme.read_text()


def test_parse_set_reads_json_values():
    assert cli.parse_set(["fanout.rate=20", "memory.steps=[0,10]", "mmo.name=x"]) == {
        "fanout": {"rate": 20},
        "memory": {"steps": [0, 10]},
        "mmo": {"name": "x"},
    }
    with pytest.raises(ValueError):
        cli.parse_set(["rate=20"])


# ---------------------------------------------------------------------- one real run

# A toy server: counts TCP lines and answers each; "stats" and "gc" on stdin.
TOY_SERVER = textwrap.dedent(
    """
    import json, os, socket, sys, threading
    port = int(sys.argv[1])
    srv = socket.create_server(("127.0.0.1", port))
    served = [0]
    def conn(c):
        f = c.makefile("rwb")
        for line in f:
            served[0] += 1
            f.write(line); f.flush()
    def accept():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    if "chatty" in sys.argv:  # like a server that logs to stdout and takes no commands
        for i in range(20000):
            print("log line", i, "x" * 40)
        sys.stdout.flush()
        threading.Event().wait()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "quit":
            os._exit(0)
        print(json.dumps({"served": served[0]} if cmd == "stats" else {"ok": True}), flush=True)
    """
)

# A toy load: the load protocol; a thread sends lines and counts answers (bounded by count).
TOY_LOAD = textwrap.dedent(
    """
    import json, os, socket, sys, threading, time
    st = {"units": 0, "running": False}
    def loop(port, limit):
        c = socket.create_connection(("127.0.0.1", port))
        f = c.makefile("rwb")
        for i in range(limit):
            while not st["running"]:
                time.sleep(0.01)
            f.write(b"ping\\n"); f.flush()
            f.readline()
            st["units"] += 1
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "quit":
            os._exit(0)
        if name == "setup":
            threading.Thread(target=loop, args=(cmd["port"], 2_000_000), daemon=True).start()
            out = {"ok": True, "connected": 1}
        elif name == "start":
            st["running"] = True
            out = {"ok": True}
        elif name == "sample":
            out = {"t": time.monotonic(), "units": st["units"], "bytes": 5 * st["units"], "lat_p50_ms": 0.1}
        elif name == "stop":
            st["running"] = False
            out = {"ok": True}
        elif name == "connect":
            out = {"connected": cmd["n"]}
        else:
            out = {"error": "unknown"}
        print(json.dumps(out), flush=True)
    """
)


class ToyNet(System):
    name, label, scenarios = "a", "toy", frozenset({"toy", "mem"})

    def __init__(self, tmp: Path, server_argv_extra=()):
        (tmp / "server.py").write_text(TOY_SERVER)
        (tmp / "load.py").write_text(TOY_LOAD)
        self.tmp, self.extra = tmp, list(server_argv_extra)

    def server(self, ctx: RunContext) -> ProcessSpec:
        return ProcessSpec([sys.executable, str(self.tmp / "server.py"), str(ctx.port), *self.extra])

    def load(self, ctx: RunContext) -> ProcessSpec:
        return ProcessSpec([sys.executable, str(self.tmp / "load.py")])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_real_window_run_of_a_toy_system(tmp_path):
    run = Run(ToyNet(tmp_path), WINDOW, WINDOW.params_for(False), 0, Env(cache=tmp_path), tmp_path)
    m = run.measure()
    pids = [run.server.pid, run.load.pid]
    assert m["units"] > 0 and m["cpu_us_per_unit"] > 0 and math.isfinite(m["units_per_s"])
    assert m["bytes_per_ping"] == pytest.approx(5.0)
    assert m["server_counters"]["served"] >= m["units"] - 1
    assert m["server_processes"] == 1 and m["server_rss_kib"] > 0
    assert m["lat_p50_ms"] == 0.1 and m["setup"] == {"connected": 1}
    assert all(_gone(pid) for pid in pids)  # no orphans
    assert (tmp_path / "toy-a-0-server.log").exists()


def test_a_server_that_takes_no_commands_and_fills_its_stdout(tmp_path):
    class Chatty(ToyNet):
        def server(self, ctx):
            return ProcessSpec(
                [sys.executable, str(self.tmp / "server.py"), str(ctx.port), "chatty"], ready="port", control=False
            )

    m = measure_run(Chatty(tmp_path), WINDOW, WINDOW.params_for(False), 0, Env(cache=tmp_path), tmp_path)
    assert m["units"] > 0 and "server_counters" not in m
    assert (tmp_path / "toy-a-0-server.log").stat().st_size > 20000 * 40  # kept, not blocking the server
    with pytest.raises(ValueError):
        ProcessSpec(["x"], control=False)  # ready="line" needs commands


def test_a_real_memory_run_of_a_toy_system(tmp_path):
    m = measure_run(ToyNet(tmp_path), MEMORY, MEMORY.params_for(False), 0, Env(cache=tmp_path), tmp_path)
    assert [s["conns"] for s in m["steps"]] == [0, 2]
    assert "kib_per_conn_at_2" in m and m["kib_per_conn"] == m["kib_per_conn_at_2"]


def test_a_server_that_dies_fails_the_run_with_its_log(tmp_path):
    class Crashing(ToyNet):
        def server(self, ctx):
            return ProcessSpec([sys.executable, "-c", "import sys; print('bad config', file=sys.stderr); sys.exit(3)"])

    with pytest.raises(ChildError, match=r"exited with code 3[\s\S]*bad config"):
        measure_run(Crashing(tmp_path), WINDOW, WINDOW.params_for(False), 0, Env(cache=tmp_path), tmp_path)


# ---------------------------------------------------------------------- Tickwire's load generator

# The load counts the server's frames without decoding them (bench/tickwire_frames.py);
# every count here is checked against the engine's own decoder.

def _deliveries(codec: PackedCodec, channel_id: int, datas: list[bytes]) -> list[bytes]:
    """Channel messages as the worker encodes them (channels.py: once per message)."""
    prefix = codec.channel_prefix(channel_id, "c")
    return [codec.channel_message(prefix, codec.codebook.payload(d)) for d in datas]


def _full_count(wire: ClientFrames, frame: bytes, channel_id: int) -> tuple[int, int]:
    """(deliveries on channel_id, other messages), by the full decoder."""
    ctx = wire.context()
    ctx.channel_types.update({channel_id: P.Bytes.TYPE_ID, 7: P.Bytes.TYPE_ID})
    msgs = wire.decode(frame, ctx)
    mine = sum(1 for m in msgs if type(m) is P.Message and m.channel == channel_id)
    return mine, len(msgs) - mine


@pytest.mark.parametrize("size", [8, 32, 127, 200])
@pytest.mark.parametrize("channel_id", [1, 5, 127, 300])
def test_delivery_counter_agrees_with_the_decoder(size, channel_id):

    wire = ClientFrames(size)
    codec = PackedCodec(wire.codebook)
    counter = DeliveryCounter(channel_id, size)
    rng = random.Random(size * 1000 + channel_id)
    ping = wire.codebook.encode(P.Ping())
    for k in (1, 2, 3, 20, 57):
        datas = [wire.data(rng.random()) for _ in range(k)]
        frame = b"".join(_deliveries(codec, channel_id, datas))
        assert counter.count(frame) == k == _full_count(wire, frame, channel_id)[0]
        assert counter.stamps(frame, k) == [struct.unpack_from("<d", d)[0] for d in datas]
        # Anything else in the frame sends it to the decoder: the fast count says 0.
        mixed = [
            ping + frame,
            frame + ping,
            frame[: len(frame) // 2] + ping + frame[len(frame) // 2 :],
            frame + b"".join(_deliveries(codec, 7, [wire.data(0.5)])),  # another channel
            b"".join(_deliveries(codec, channel_id, [d[:-1] for d in datas])),  # shorter data
        ]
        for other in mixed:
            assert counter.count(other) == 0
            try:
                _full_count(wire, other, channel_id)
            except DecodeError:
                pass  # not a frame the server sends; what matters is that it is not counted
    # Random bytes of the right length are counted only if the decoder agrees.
    for _ in range(300):
        k = rng.randint(1, 4)
        frame = bytes(rng.randrange(256) for _ in range(k * counter.length))
        if counter.count(frame):
            assert _full_count(wire, frame, channel_id)[0] == counter.count(frame)


def test_churn_replies_are_scanned_as_the_decoder_reads_them():

    wire = ClientFrames()
    cb = wire.codebook
    rng = random.Random(9)

    def subscribed(cid, name, channel_id, type_id):
        return cb.encode(P.Subscribed(cid, [P.ChannelInfo(name, channel_id, type_id, 0, "")]))

    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.5:
                name = "ch%d" % rng.randrange(10**rng.randint(1, 9))
                parts.append(subscribed(rng.choice([1, 127, 128, 16383]), name, rng.choice([1, 127, 128, 70000]),
                                        rng.choice([2, 3, 200])))
            else:
                parts.append(cb.encode(P.Result(rng.choice([1, 127, 128, 16383]), None)))
        frame = b"".join(parts)
        ids, results, errors = acks_of(cb.decode_frame(frame, wire.context()))
        assert scan_acks(frame) == (ids, results) and errors == 0
        assert scan_acks(frame[:-1]) is None  # truncated: the decoder decides

    # What the scan does not take: the decoder's answer is used instead.
    ok = subscribed(3, "ch1", 4, 2)
    for other in (
        cb.encode(P.Subscribed(3, [P.ChannelInfo("ch1", 0, 0, 5, "max_channels_per_connection")])),
        cb.encode(P.Subscribed(3, [P.ChannelInfo("a", 4, 2, 0, ""), P.ChannelInfo("b", 5, 2, 0, "")])),
        cb.encode(P.Error(3, 5, "max_messages_per_second")),
        cb.encode(P.Result(3, cb.payload({"x": 1}))),
        cb.encode(P.Ping()),
    ):
        assert scan_acks(ok + other) is None and scan_acks(other + ok) is None
        acks_of(cb.decode_frame(ok + other, wire.context()))  # decodes


def test_the_load_sends_what_the_codebook_encodes():
    wire = ClientFrames(32)
    cb, ctx = wire.codebook, wire.context()
    payload = cb.payload(wire.data(12.5))
    assert wire.publish(12.5) == cb.encode(P.Publish(0, "c", payload))
    assert wire.call_echo == cb.encode(P.Call(1, "echo", cb.payload(wire.data(0.0))))
    # the worker answers `echo` with the same data (engine/worker.py, _call_result)
    assert wire.echo_reply == cb.encode(P.Result(1, cb.payload(cb.payload_value(cb.payload(wire.data(0.0))))))
    (sub,) = cb.decode_frame(wire.subscribe(b"ch12345"), ctx)
    assert type(sub) is P.Subscribe and list(sub.channels) == ["ch12345"] and sub.cid > 0
    (unsub,) = cb.decode_frame(wire.unsubscribe(70000), ctx)
    assert type(unsub) is P.Unsubscribe and list(unsub.channels) == [70000] and unsub.cid > 0
    hello = cb.decode_frame(wire.handshake + wire.subscribe_channel, ctx)
    assert [type(m) for m in hello] == [P.Handshake, P.Subscribe] and hello[0].schema_hash == cb.hash
    cids = {cb.decode_frame(wire.subscribe(b"x"), ctx)[0].cid for _ in range(40000)}
    assert 0 not in cids and max(cids) < 1 << 14  # cycling, never 0 (0 asks for no reply)


def _tickwire_prepared(tmp_path: Path, name: str = "tickwire"):
    """A prepared Tickwire system. Its load needs picows from the bench venv: outside CI
    this fast suite does not install it (python -m bench --setup does) and skips."""
    from bench.anchors.install import cache_dir, venv_python
    from bench.tickwire_systems import tickwire_systems

    env = Env(cache=cache_dir())
    installed = venv_python(env).exists() and list((env.cache / "venv").glob(".installed-requirements*"))
    if not installed and not IN_CI:
        pytest.skip("the bench venv is not installed (python -m bench --setup)")
    (system,) = [s for s in tickwire_systems() if s.name == name]
    versions = system.prepare(env)
    assert versions["tickwire"] and versions["picows (load)"]
    return system, env


def test_a_tiny_tickwire_fanout_run_counts_what_the_server_sent(tmp_path):
    from bench.scenarios import FANOUT_BATCH

    system, env = _tickwire_prepared(tmp_path)
    params = FANOUT_BATCH.params_for(
        True, {"subscribers": 20, "burst": 5, "rate": 20, "sample_every": 4, "warm_s": 0.3, "window_s": 0.8}
    )
    run = Run(system, FANOUT_BATCH, params, 0, env, tmp_path)
    m = run.measure()
    assert m["units"] > 0 and m["cpu_us_per_unit"] >= 0 and m["lat_n"] > 0  # CPU: 10 ms ticks
    assert m["counts"]["errors"] == 0 and m["counts"]["closed"] == 0
    stop = m["stop"]
    assert stop["backlog"] == 0 and stop["delivered"] == stop["published"] * 20
    # the server's own counters over (about) the same window: deliveries and frames agree
    # with the load's, and 5 messages shared each frame
    server = m["server_counters"]
    assert server["deliveries"] == pytest.approx(m["units"], abs=5 * 20 * 2)
    assert server["publishes"] * 20 == server["deliveries"]
    assert m["counts"]["units"] == 5 * m["counts"]["frames"]
    assert all(_gone(pid) for pid in (run.server.pid, run.load.pid))


# ---------------------------------------------------------------------- the mmo scenario


def _mmo_room(params):
    """The mmo room of bench/tickwire_mmo_app.py, run in process, and its players."""
    from bench.tickwire_mmo_app import ROOM, configure, schema_module
    from engine.packed import Codebook
    from engine.rooms import RoomRunner

    mmo = schema_module()
    room = configure(params)()
    runner = RoomRunner(room, "r", ROOM, Codebook(P, mmo), 0.0)
    room.on_create(None)
    players = []
    for i in range(params["clients"]):
        player = runner.join(f"b{i}", None, 0.0)
        player.worker, player.socket_id, player.handle = "w", f"s{i}", 1
        players.append(player)
    return runner, players, mmo


class _Counting(dict):
    """A client's entities that count what apply_entity_sync does to them: an enter
    record sets an entity, an update record updates one (a test seam, injected)."""

    def __init__(self):
        super().__init__()
        self.enters = self.updates = 0

    def __setitem__(self, eid, values):
        self.enters += 1
        owner = self

        class Values(dict):
            def update(self, *a, **k):
                owner.updates += 1
                super().update(*a, **k)

        super().__setitem__(eid, Values(values))


def test_sync_counter_counts_what_the_decoder_applies():
    from bench.tickwire_frames import SyncCounter, room_frame
    from bench.tickwire_mmo_app import steer_of
    from engine.interest import ClientWorld, SyncLayout, apply_entity_sync

    params = {"entities": 400, "clients": 6, "hz": 20, "move_frac": 0.5, "view_frac": 0.2, "seed": 3}
    runner, players, mmo = _mmo_room(params)
    ctx = runner.codebook.context(max_string=1 << 20, max_vector=1 << 24)
    worlds: dict[int, ClientWorld] = {}
    counter = None
    checked = 0
    for k in range(60):
        now = k / 20 + 1e-6
        for i, p in enumerate(players):
            runner.input(p, k + 1, mmo.Steer(*steer_of(i)), now)
        if k == 30:  # a teleport: a whole new view, snapshots and leaves
            runner.room.entities["x"][runner.room.avatar[players[0].id]] = 990.0
        out = runner.advance(now)
        for s in out.players:
            frame = b"".join(out.parts(s))
            msgs = runner.codebook.decode_frame(frame, ctx)
            assert [type(m) for m in msgs].count(P.Tick) == 1
            for m in msgs:
                if type(m) is P.EntitySyncInfo:
                    info = {f: getattr(m, f) for f in m.__slots__}
                    worlds[s.player_id] = ClientWorld(SyncLayout.from_info(mmo.Mob, info))
                    worlds[s.player_id].entities = _Counting()
                    counter = counter or SyncCounter(SyncLayout.from_info(mmo.Mob, info))
            syncs = [bytes(m.data) for m in msgs if type(m) is P.EntitySync]
            fast = room_frame(frame)
            if type(msgs[1]) is P.EntitySyncInfo:
                assert fast is None  # not a steady frame: the load decodes it in full
            else:
                assert fast is not None and fast[0] == msgs[0].tick
                assert frame[fast[1] : fast[2]] == (syncs[0] if syncs else b"")
            for data in syncs:
                world = worlds[s.player_id]
                before = (world.entities.enters, world.entities.updates)
                apply_entity_sync(world, data)
                updates, enters, departs, leaves = counter.count(data)
                assert (enters, updates) == (world.entities.enters - before[0], world.entities.updates - before[1])
                assert counter.walk(data) == (updates, enters, departs, leaves)
                checked += 1
                with pytest.raises(DecodeError):
                    counter.walk(data[:-1] + b"\xff\xff")  # its last group runs past the end
    assert checked > 300 and counter.cache  # shared messages were counted once


def test_mmo_views_cover_the_share_asked_for():
    import numpy as np

    from bench.tickwire_mmo_app import STEP, WORLD_SIZE, cell_size_for, coverage

    for frac in (0.05, 0.1, 0.25):
        cell = cell_size_for(frac)
        assert coverage(cell) == pytest.approx(frac, rel=0.02)
        # Brute force: the share of the world a view at a random place covers.
        q = round(WORLD_SIZE / STEP) + 1
        c = round(cell / STEP)
        cols = -(-q // c)
        pos = np.random.default_rng(1).integers(0, q, (2, 20000))
        centre = np.minimum(pos // c, cols - 1)
        seen = np.minimum(q, (centre + 2) * c) - np.maximum(0, (centre - 1) * c)
        assert (seen[0] * seen[1] / q**2).mean() == pytest.approx(frac, rel=0.03)
    assert cell_size_for(0) == WORLD_SIZE


def test_a_tiny_tickwire_mmo_run_gets_one_frame_per_client_per_tick(tmp_path):
    from bench.scenarios import MMO

    system, env = _tickwire_prepared(tmp_path)
    params = MMO.params_for(True, {"entities": 300, "clients": 6, "view_frac": 0.25, "warm_s": 0.5, "window_s": 1.0})
    run = Run(system, MMO, params, 0, env, tmp_path)
    m = run.measure()
    c = m["counts"]
    assert m["units"] > 0 and c["errors"] == 0 and c["closed"] == 0 and c["other_frames"] == 0
    assert m["frames_per_client_tick"] == 1.0 and c["messages"] == 6 * c["units"] == c["client_ticks"]
    assert c["inputs"] == c["messages"] and 2 < m["bytes_per_entity_update"] < 8
    server = m["server_counters"]
    assert server["room_sends"] == pytest.approx(c["units"], abs=3)
    assert server["room_inputs"] == pytest.approx(c["inputs"], abs=6 * 3)
    assert server["out_cpu_us"] > 0 and server["in_cpu_us"] > 0 and server["room_input_cpu_us"] > 0
    assert server["room_wake_cpu_us"] == pytest.approx(server["out_cpu_us"] + server["room_input_cpu_us"])
    assert m["out_us_per_tick"] > 0 and 0.05 < m["view_frac_seen"] < 0.6 and m["frame_bytes_p50"] > 0
    assert m["setup"]["connected"] == 6 and m["setup"]["load_procs"] == 1
    assert all(_gone(pid) for pid in (run.server.pid, run.load.pid))


def test_tickwire_mmo_load_in_two_processes_counts_every_bot(tmp_path):
    from bench.scenarios import MMO

    system, env = _tickwire_prepared(tmp_path)
    params = MMO.params_for(
        True, {"entities": 200, "clients": 5, "load_procs": 2, "view_frac": 0.25, "warm_s": 0.5, "window_s": 1.0}
    )
    run = Run(system, MMO, params, 0, env, tmp_path)
    m = run.measure()
    c = m["counts"]
    assert m["setup"]["load_procs"] == 2 and m["stop"]["bots"] == 5
    assert c["errors"] == 0 and m["frames_per_client_tick"] == 1.0
    # Each process reads its counters a moment apart at each edge of the window, so a bot
    # may count one tick more or less at either edge; a bot not counted would be 20 off.
    assert c["units"] >= 10 and abs(c["messages"] - 5 * c["units"]) <= 2 * 5
    assert all(_gone(pid) for pid in (run.server.pid, run.load.pid))


def test_a_tiny_mmo_floor_run_writes_frames_of_the_size_asked(tmp_path):
    from bench.anchors.install import cache_dir, venv_python
    from bench.anchors.systems import anchor_systems
    from bench.scenarios import MMO

    env = Env(cache=cache_dir())
    if not venv_python(env).exists() and not IN_CI:
        pytest.skip("the bench venv is not installed (python -m bench --setup)")
    (floor,) = [s for s in anchor_systems() if s.name == "websockets"]
    floor.prepare(env)
    params = MMO.params_for(True, {"clients": 6, "floor_bytes": 700, "warm_s": 0.5, "window_s": 1.0})
    m = Run(floor, MMO, params, 0, env, tmp_path).measure()
    c = m["counts"]
    assert m["frames_per_client_tick"] == 1.0 and c["messages"] == 6 * c["units"] and c["inputs"] == c["messages"]
    assert m["bytes_per_client_tick"] == 700 and m["frame_bytes_p50"] == 700
    assert m["server_counters"]["out_cpu_us"] > 0 and m["out_us_per_tick"] > 0


def test_tickwire_bench_runs_the_bench_package(capsys):
    from engine import cli as engine_cli

    assert engine_cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "tickwire, tickwire-1w, tickwire-2w" in out and "fanout-batch" in out
