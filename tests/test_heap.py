"""Freed memory stays in the process for the next pass (glibc): a second pass of the same
sizes takes no new pages from the system."""

import platform
import resource
import sys

import numpy as np
import pytest

from cnnplay.core.kernels import heap

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="glibc's allocator only")
def test_a_second_pass_of_the_same_sizes_takes_no_new_pages():
    assert heap.keep_freed_memory()

    def one_pass():  # like a forward pass: maps of a few MB, all alive, then freed together
        maps = [np.ones((16, 256, 256), np.float32) for _ in range(6)]  # 24 MB
        return float(sum(m[0, 0, 0] for m in maps))

    one_pass()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert one_pass() == 6.0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 100, f"{faults} page faults: the first pass's memory went back to the system"  # 6144 pages if it had


@pytest.mark.skipif(glibc, reason="other allocators are left alone")
def test_elsewhere_nothing_is_changed():
    assert heap.keep_freed_memory() is False
