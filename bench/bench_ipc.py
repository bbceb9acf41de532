"""Micro-benchmark of the broker hop: worker -> broker -> worker over Unix sockets.

    python -m bench.bench_ipc [--messages N] [--size BYTES] [--brokers 1]

Starts a broker process, and in this process two BrokerBus endpoints (a publishing
"worker" and a subscribing one, each with its own socket to the broker, as two workers
would have). Run it manually on a quiet machine; it is not part of the test suite.

Modes:
- batched:   up to `--burst` publishes per loop iteration, so the publisher's link writes
             them in one write and the broker forwards each chunk it reads in one write;
- unbatched: one publish per loop iteration: one write per message on the publisher's side;
- pingpong:  one message in flight at a time: every hop pays a write and a wake-up.
The first two keep at most `--window` messages in flight (no drops; checked).

Figures: messages delivered per second, wall microseconds per message, CPU microseconds per
message of this process (both worker ends, from process_time) and of the broker (from
/proc, 10 ms ticks: run long enough), and messages per write on the publisher's link.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import uvloop

from bench.proc import read_stat
from engine.brokerbus import BrokerBus
from engine.packed import Payload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def broker_cpu(pid: int) -> float:
    stat = read_stat(pid)
    return stat.own.total if stat else 0.0


async def run_mode(mode: str, pub: BrokerBus, sub: BrokerBus, n: int, size: int, window: int, burst: int, broker_pid: int) -> dict[str, Any]:
    channel = f"bench.{mode}"
    payload = Payload(1, b"x" * size)
    received = 0
    progress = asyncio.Event()

    def deliver(name: str, p: Payload) -> None:
        nonlocal received
        received += 1
        progress.set()

    sub.attach(deliver)
    sub.subscribe(channel)
    await asyncio.sleep(0.1)  # the SUB reaches the broker
    link = pub.remotes[pub.owner_of(channel)].link
    assert link is not None
    writes0, frames0 = link.writes, link.frames_out
    if mode == "pingpong":
        window, burst = 1, 1
    elif mode == "unbatched":
        burst = 1
    cpu0, bcpu0, t0 = time.process_time(), broker_cpu(broker_pid), time.perf_counter()
    sent = 0
    while received < n:
        room = min(window - (sent - received), n - sent, burst)
        for _ in range(max(0, room)):
            pub.publish(channel, payload)
            sent += 1
        if sent - received >= window or sent == n:
            progress.clear()
            await progress.wait()
        else:
            await asyncio.sleep(0)  # end the loop iteration: the queued publishes leave
    wall = time.perf_counter() - t0
    cpu, bcpu = time.process_time() - cpu0, broker_cpu(broker_pid) - bcpu0
    sub.unsubscribe(channel)
    assert pub.stats.dropped_full == 0 and pub.stats.dropped_down == 0
    return {
        "mode": mode,
        "messages": n,
        "msg_per_s": n / wall,
        "wall_us": wall / n * 1e6,
        "worker_cpu_us": cpu / n * 1e6,
        "broker_cpu_us": bcpu / n * 1e6,
        "msgs_per_write": (link.frames_out - frames0) / max(1, link.writes - writes0),
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="tw-bench-")
    path = os.path.join(tmp, "broker-0.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.broker", "--path", path, "--id", "0", "--log-level", "WARNING"], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the broker did not start")
                    await asyncio.sleep(0.02)
        pub = BrokerBus({0: path}, "bench-pub")
        sub = BrokerBus({0: path}, "bench-sub")
        await pub.start()
        await sub.start()
        results = []
        for mode in args.modes:
            n = args.messages if mode != "pingpong" else max(1, args.messages // 10)
            await run_mode(mode, pub, sub, min(n, 2000), args.size, args.window, args.burst, proc.pid)  # warm up
            results.append(await run_mode(mode, pub, sub, n, args.size, args.window, args.burst, proc.pid))
        await pub.close()
        await sub.close()
        return results
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ipc")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64, help="payload body bytes")
    parser.add_argument("--window", type=int, default=1000, help="messages in flight")
    parser.add_argument("--burst", type=int, default=100, help="publishes per loop iteration (batched)")
    parser.add_argument("--modes", nargs="+", default=["batched", "unbatched", "pingpong"])
    args = parser.parse_args(argv)
    results = uvloop.run(main_async(args))
    print(f"{'mode':<10} {'msgs':>8} {'msg/s':>10} {'wall us':>8} {'worker cpu us':>14} {'broker cpu us':>14} {'msgs/write':>10}")
    for r in results:
        print(
            f"{r['mode']:<10} {r['messages']:>8} {r['msg_per_s']:>10,.0f} {r['wall_us']:>8.2f} "
            f"{r['worker_cpu_us']:>14.2f} {r['broker_cpu_us']:>14.2f} {r['msgs_per_write']:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
