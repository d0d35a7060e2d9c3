"""kernels/vectors.py: 64-byte aligned buffers, and 512-bit vectors where the CPU has
AVX-512 (the direct convolution uses both; its results are tested against float64
references in test_batch_layers and test_kernels_forward)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cnnplay.core.kernels.vectors import LANES, aligned_rows, wide_vectors


@njit(cache=False)
def _rows(rows, cols):
    a = aligned_rows(rows, cols)
    return a, a.ctypes.data


def test_aligned_rows_start_on_64_byte_boundaries():
    for rows, cols in [(1, 16), (4, 1296), (3, 48), (7, 16 * 81)]:
        for _ in range(5):  # allocations land at different offsets
            a, address = _rows(rows, cols)
            assert a.shape == (rows, cols) and a.dtype == np.float32
            assert address % 64 == 0 and (cols * 4) % 64 == 0
            a[:] = 1.0  # the whole buffer is writable
            assert a.sum() == rows * cols


@njit(cache=False, parallel=True)
def _scaled(x, y, out):
    for job in prange(out.shape[0]):
        wide_vectors()
        row = x[job]
        dst = out[job]
        for j in range(row.shape[0]):
            dst[j] = row[j] * y[j] + 1.0


def test_wide_vectors_compiles_to_512_bits_only_where_the_cpu_has_them():
    import llvmlite.binding as llvm
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4096)).astype(np.float32), rng.standard_normal(4096).astype(np.float32)
    out = np.empty_like(x)
    _scaled(x, y, out)
    np.testing.assert_allclose(out, x * y + 1.0, rtol=1e-6)
    asm = _scaled.overloads[_scaled.signatures[0]].library.get_asm_str()
    features = _scaled.targetctx.codegen().magic_tuple()[2].split(",")
    assert ("zmm" in asm) == ("+avx512f" in features), (features[:4], llvm.get_host_cpu_name())
    assert LANES == 16
