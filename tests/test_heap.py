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
