"""Fuzz the packed decoders: mutated frames must give messages or a DecodeError, quickly,
with memory in proportion to the input, and (with --js) the same verdict in JavaScript.

    .venv/bin/python -m bench.fuzz_codec --seconds 600           # Python decoders
    .venv/bin/python -m bench.fuzz_codec --seconds 600 --js      # and the JS ones, differentially

The corpus is every frame of the golden vectors (codecs/vectors/*.json); each input is one
of them mutated a few times (bytes flipped, inserted, deleted, runs duplicated, frames
spliced, varint-sized values planted, cut short). tests/test_packed.py runs it for a
second; a finding prints the input's hex and the exit code is 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Callable

from engine._generated import protocol as P
from engine.packed import Codebook, DecodeError, UnknownType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "codecs", "vectors")
GOLDEN_JS = os.path.join("tests", "golden", "everything.js")
CHANNELS = {5: 99, 130: 3}

# A decode of one frame may take this long before it counts as a hang; and allocate at
# most this much beyond a fixed allowance per byte of input.
SLOW_S = 0.05
BYTES_PER_INPUT_BYTE = 64
ALLOWANCE = 256 * 1024


def everything_module() -> Any:
    """The golden module of tests/schemas/everything.fbs (the same object the tests use,
    when they have imported it: two copies would have two sets of classes)."""
    path = os.path.join(ROOT, "tests", "golden", "everything.py")
    if "tickwire_golden_everything" in sys.modules:
        return sys.modules["tickwire_golden_everything"]
    spec = importlib.util.spec_from_file_location("tickwire_golden_everything", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def corpus() -> list[bytes]:
    frames = []
    for name in sorted(os.listdir(VECTORS)):
        with open(os.path.join(VECTORS, name), encoding="utf-8") as fh:
            spec = json.load(fh)
        frames += [bytes.fromhex(f["hex"]) for f in spec["frames"]]
        frames += [bytes.fromhex(f["hex"]) for f in spec["invalid"] if f["hex"]]
    return frames


_PLANTS = [b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b"\x80\x01", b"\xff\xff\xff\xff\x0f",
           b"\xff" * 9 + b"\x01", b"\x80" * 10 + b"\x00", b"\x02", b"\x40", b"\xc0\x80"]


def mutate(data: bytes, frames: list[bytes], rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and b:
            del b[i : i + rng.randint(1, 4)]
        elif op == 3 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 8)]
        elif op == 4:
            other = rng.choice(frames)
            b = b[:i] + other[rng.randrange(len(other) + 1) :]
        elif op == 5:
            b[i:i] = rng.choice(_PLANTS)
        elif op == 6 and b:
            b = b[: rng.randrange(len(b))]
    return bytes(b)


class JsPeer:
    """codecs/js/testing/peer.mjs: the JavaScript decoder, one JSON line per frame."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", "codecs/js/testing/peer.mjs", "protocol=codecs/js/generated/protocol.js", f"everything={GOLDEN_JS}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def verdict(self, data: bytes) -> str:
        assert self.proc.stdin and self.proc.stdout
        req = {"op": "decode", "schemas": ["protocol", "everything"], "hex": data.hex(),
               "context": {"channel_types": {str(k): v for k, v in CHANNELS.items()}}}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return "ok" if reply["ok"] else reply["error"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def run(seconds: float, seed: int, js: bool, report: Callable[[str], None]) -> int:
    cb = Codebook(P, everything_module())
    ctx = cb.context(channel_types=dict(CHANNELS))
    frames = corpus()
    rng = random.Random(seed)
    peer = JsPeer() if js else None
    findings = runs = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = mutate(rng.choice(frames), frames, rng)
            measure = runs % 100 == 0
            if measure:
                tracemalloc.start()
            started = time.perf_counter()
            try:
                cb.decode_frame(data, ctx)
                verdict = "ok"
            except UnknownType:
                verdict = "UnknownType"
            except DecodeError:
                verdict = "DecodeError"
            except Exception as exc:  # the finding this looks for
                verdict = f"crash: {type(exc).__name__}: {exc}"
            took = time.perf_counter() - started
            if measure:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                if peak > ALLOWANCE + BYTES_PER_INPUT_BYTE * len(data):
                    verdict = f"allocated {peak} bytes for {len(data)} bytes of input"
            elif took > SLOW_S:
                verdict = f"took {took * 1000:.0f} ms"
            problem = verdict not in ("ok", "DecodeError", "UnknownType")
            if not problem and peer is not None:
                other = peer.verdict(data)
                if other != verdict:
                    problem, verdict = True, f"Python says {verdict}, JavaScript says {other}"
            if problem:
                findings += 1
                report(f"{data.hex()}  {verdict}")
            runs += 1
    finally:
        if peer is not None:
            peer.close()
    report(f"{runs} inputs in {seconds:g} s (seed {seed}), {findings} findings")
    return 1 if findings else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_codec", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--js", action="store_true", help="also decode each input in JavaScript and compare")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    return run(args.seconds, seed, args.js, lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
