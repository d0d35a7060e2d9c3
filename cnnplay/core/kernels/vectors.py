"""512-bit vectors where the CPU has them, and buffers aligned for them.

On Intel's server cores (Skylake-X to Sapphire Rapids) LLVM vectorizes with
256-bit vectors by default even where the CPU has AVX-512 (its tuning for them:
"prefer-256-bit"); on AMD's Zen 4 it uses 512 bits already. `wide_vectors()`,
called in a kernel's parallel loop body, marks the function LLVM compiles that
body into for 512-bit vectors, only where the target has AVX-512 (elsewhere
wider vectors would be split in two and double the registers a block needs).
Compiling every kernel that way (NUMBA_CPU_FEATURES with -prefer-256-bit) made
the bench no faster; the direct convolution alone, marked, ran at 1.05-1.16x its
256-bit time until its accumulators were aligned (`aligned_rows`): a 512-bit
load or store at an address that is not a multiple of 64 bytes spans two cache
lines, and numba's allocations are aligned to less. Aligned, 0.83-0.91x (Intel
Xeon; conv._direct's doc). Marked the same way, the weight gradient's kernels
(sums in registers) took 0.94-1.00x and Winograd's transforms 0.94-1.05x: left
as they were.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

LANES = 16  # float32 per 64 bytes: rows of aligned_rows start at multiples of this


@intrinsic
def wide_vectors(typingctx):
    """In a kernel's loop body: compile the enclosing function for 512-bit vectors
    if the target CPU has AVX-512 (LLVM function attributes; nothing otherwise)."""
    def codegen(context, builder, signature, args):
        if "+avx512f" in context.codegen().magic_tuple()[2].split(","):
            attrs = builder.function.attributes
            try:  # string attributes, which llvmlite's attribute set does not list (a set it is)
                for attr in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
                    set.add(attrs, attr)
            except TypeError:  # another llvmlite: the kernel compiles as before, on LLVM's default
                pass
        return context.get_dummy_value()
    return types.void(), codegen


@njit(cache=True)
def aligned_rows(rows, cols):
    """An uninitialised float32 (rows, cols) array whose rows start at 64-byte
    boundaries (cols a multiple of LANES)."""
    buf = np.empty(rows * cols + LANES, np.float32)
    shift = (LANES - (buf.ctypes.data // 4) % LANES) % LANES
    return buf[shift:shift + rows * cols].reshape(rows, cols)
