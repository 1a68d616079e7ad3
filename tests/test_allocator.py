"""Processes that run the networks keep freed memory for the next batch (shared/allocator.py)."""

import subprocess
import sys

import pytest

from lineinspect.shared.allocator import glibc_mallopt

# In a fresh interpreter: page faults of ten rounds of allocating, filling and freeing a
# 64 MiB array (a batch's activations), after one round to settle.
ROUNDS_SCRIPT = """
import resource, sys
import numpy as np
from lineinspect.shared.allocator import hold_freed_memory
if sys.argv[1] == "hold":
    assert hold_freed_memory()
np.ones(8 << 20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(8 << 20).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS_SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(glibc_mallopt() is None, reason="no glibc mallopt here: the setting only applies with glibc")
def test_freed_batch_memory_is_reused_instead_of_mapped_and_faulted_in_again() -> None:
    default, held = page_faults("default"), page_faults("hold")
    pages_per_round = (64 << 20) // 4096
    # glibc's default maps every 64 MiB block afresh and unmaps it when freed: each round faults
    # its memory in again (fewer faults where the kernel backs it with huge pages, still each round).
    assert held < pages_per_round / 100, f"{held} page faults in 10 rounds while holding freed memory"
    assert default > 20 * max(held, 1), f"{default} page faults in 10 rounds without holding, {held} with"
