"""engine/heap.py: a server process keeps its freed heap instead of faulting it in again."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from engine.heap import keep_heap_pad

# Run in a fresh interpreter (mallopt is process-wide): each round allocates 4 MB of
# 100 KB blocks (under the mmap threshold, so on the heap's top) and frees them; the
# minor page faults of the last rounds are counted.
ROUNDS = """
import json, resource, sys
from engine.heap import keep_heap_pad
pad = int(sys.argv[1])
ok = keep_heap_pad(pad)

def round_():
    blocks = [bytearray(100_000) for _ in range(40)]
    del blocks

for _ in range(5):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    round_()
print(json.dumps({"ok": ok, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def faults(pad: int) -> dict:
    out = subprocess.run([sys.executable, "-c", ROUNDS, str(pad)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_heap_pad_ends_the_page_faults_of_a_tick_that_allocates_and_frees():
    plain, padded = faults(0), faults(16 << 20)
    assert plain["ok"] is False and padded["ok"] is True
    # 50 rounds of 4 MB: ~1,000 faults a round when the heap's top goes back each time.
    assert plain["faults"] > 10_000
    assert padded["faults"] < plain["faults"] / 20


def test_a_pad_of_zero_changes_nothing():
    assert keep_heap_pad(0) is False
    assert keep_heap_pad(-1) is False


# In a fresh interpreter: 100,000 tuples kept alive, the young-generation collections
# counted through gc.callbacks.
COLLECTIONS = """
import gc, json, sys
from engine.app import Settings
from engine.heap import tune_memory
if sys.argv[1] == "tuned":
    tune_memory(Settings())
runs = []
gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
keep = [(i, i) for i in range(100_000)]
print(json.dumps({"threshold": gc.get_threshold()[0], "collections": len(runs)}))
"""


def collections(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", COLLECTIONS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_server_process_runs_the_collector_far_less_often():
    plain, tuned = collections("plain"), collections("tuned")
    assert plain["threshold"] == 700 and tuned["threshold"] == 20_000
    assert plain["collections"] >= 100  # one every 700 allocations
    assert tuned["collections"] <= 10


def test_a_gc_threshold_of_zero_changes_nothing():
    from engine.heap import collect_every

    assert collect_every(0) is False
