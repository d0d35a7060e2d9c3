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

Where a kernel's block of accumulators must stay in registers across a long loop
(direct512.py, products512.py), LLVM's vectorizer does not keep them there;
`F32x16` is a numba type for one 512-bit register of 16 float32, with `load16` /
`store16` / `splat16` / `fma16` / `fmav16` / `sum16` to write such a kernel
explicitly (`avx512()` says whether the CPU runs it natively; elsewhere LLVM splits
every operation in two).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16  # float32 per 64 bytes: rows of aligned_rows start at multiples of this


def _features(context) -> list[str]:
    """The target CPU's features as numba compiles for it (NUMBA_CPU_NAME / _FEATURES)."""
    return context.codegen().magic_tuple()[2].split(",")


@lru_cache(maxsize=1)
def avx512() -> bool:
    """Whether the kernels compile for a CPU with AVX-512 (512-bit vector registers)."""
    from numba.core.registry import cpu_target
    return "+avx512f" in _features(cpu_target.target_context)


@intrinsic
def wide_vectors(typingctx):
    """In a kernel's loop body: compile the enclosing function for 512-bit vectors
    if the target CPU has AVX-512 (LLVM function attributes; nothing otherwise)."""
    def codegen(context, builder, signature, args):
        if "+avx512f" in _features(context):
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


# -- one 512-bit register of 16 float32 ----------------------------------------------

_V16 = ir.VectorType(ir.FloatType(), 16)


class F32x16(types.Type):
    """16 float32 in one vector register (LLVM <16 x float>)."""

    def __init__(self):
        super().__init__(name="F32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V16)


def _address(context, builder, aryty, ary, index):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [index]), _V16.as_pointer())


def _splat(builder, scalar):
    if scalar.type != ir.FloatType():
        scalar = builder.fptrunc(scalar, ir.FloatType())
    v = builder.insert_element(ir.Constant(_V16, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(_V16, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16))


@intrinsic
def load16(typingctx, a, i):
    """a[i:i + 16] of a contiguous 1D float32 array, unchecked (any alignment)."""
    def codegen(context, builder, sig, args):
        return builder.load(_address(context, builder, sig.args[0], args[0], args[1]), align=4)
    return f32x16(a, i), codegen


@intrinsic
def store16(typingctx, a, i, v):
    """a[i:i + 16] = v, unchecked (any alignment)."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()
    return types.void(a, i, v), codegen


@intrinsic
def splat16(typingctx, x):
    """16 copies of the float32 x."""
    def codegen(context, builder, sig, args):
        return _splat(builder, args[0])
    return f32x16(x), codegen


@intrinsic
def fma16(typingctx, acc, v, x):
    """acc + v * x, x a float32 scalar, in one fused multiply-add per lane."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32")
        return builder.call(fma, [args[1], _splat(builder, args[2]), args[0]])
    return f32x16(acc, v, x), codegen


@intrinsic
def fmav16(typingctx, acc, a, b):
    """acc + a * b lane by lane, in one fused multiply-add per lane."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32")
        return builder.call(fma, [args[1], args[2], args[0]])
    return f32x16(acc, a, b), codegen


@intrinsic
def sum16(typingctx, v):
    """The 16 lanes' float32 sum, in halves (8 + 8, 4 + 4, 2 + 2, 1 + 1)."""
    def codegen(context, builder, sig, args):
        v = args[0]
        width = 16
        while width > 1:
            width //= 2
            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width))))
            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), width),
                                                          list(range(width, 2 * width))))
            v = builder.fadd(lo, hi)
        return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))
    return types.float32(v), codegen
