"""Numba kernels. Public wrappers validate and allocate; private @njit(cache=True)
functions compute. All arrays are float32 and C-contiguous; spatial kernels take
(C, H, W) maps (a 1D signal is a map of height 1) and per-axis (h, w) tuples.

Forward (one module each): conv.conv2d, pool.maxpool2d / pool.avgpool2d,
norm.batchnorm / norm.layernorm (on (C, N) views), pointwise.leaky_relu,
dense.linear. Backward (vector-Jacobian products): grad.*_backward.
"""
