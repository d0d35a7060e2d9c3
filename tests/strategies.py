"""Hypothesis strategies shared by the tests: random spatial networks (1D and 2D), and
convolution geometries."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from cnnplay import Network, NetworkError

SPATIAL = st.sampled_from(["conv", "conv", "conv", "maxpool", "avgpool", "batchnorm", "relu",
                           "leaky_relu", "layernorm"])


@st.composite
def networks(draw, max_side=12, max_layers=4, out_channels=st.integers(1, 2), in_channels=st.integers(1, 2),
             max_stride=4, max_padding=3, head=("linear", "relu", "batchnorm", "layernorm", "flatten"),
             max_head=3, seeded=False):
    """A valid Network of 1..max_layers spatial layers (every window geometry), sometimes
    followed by flatten and a small head; descriptions the core rejects are skipped."""
    dims = draw(st.integers(1, 2))
    size = st.integers(1, max_side) if dims == 2 else st.integers(1, 40)
    ints = lambda lo, hi: st.integers(lo, hi) if dims == 1 else st.lists(st.integers(lo, hi), min_size=2, max_size=2)  # noqa: E731
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(SPATIAL)
        if kind == "conv":
            layers.append({"type": f"conv{dims}d", "out_channels": draw(out_channels),
                           "kernel_size": draw(ints(1, 4)), "stride": draw(ints(1, max_stride)),
                           "padding": draw(ints(0, max_padding)), "dilation": draw(ints(1, 3))})
        elif kind.endswith("pool"):
            k = draw(ints(1, 3))
            kk = [k] * dims if isinstance(k, int) else k
            pad = [draw(st.integers(0, v // 2)) for v in kk]
            layers.append({"type": f"{kind}{dims}d", "kernel_size": k, "stride": draw(ints(1, max_stride)),
                           "padding": pad if dims == 2 else pad[0]})
        else:
            layers.append({"type": kind})
    if draw(st.booleans()):
        layers.append({"type": "flatten"})
        for _ in range(draw(st.integers(0, max_head))):
            kind = draw(st.sampled_from(list(head)))
            layers.append({"type": "linear", "out_features": draw(st.integers(1, 3))} if kind == "linear"
                          else {"type": kind})
    shape = [draw(in_channels)] + [draw(size) for _ in range(dims)]
    seed = draw(st.integers(0, 99)) if seeded else 0
    try:
        return Network.from_dict({"input": shape, "layers": layers}, seed=seed)
    except NetworkError:
        assume(False)


@st.composite
def conv_geometries(draw, batch=(1, 4), in_channels=(1, 5), out_channels=(1, 5), kernel=(1, 3), stride=(1, 3),
                    padding=(0, 2), dilation=(1, 2), side=(1, 8)):
    """(n, ci, co, kernel, stride, padding, dilation, (h, w)) of a batched 2D convolution
    whose dilated kernel fits its padded input; each (lo, hi) an inclusive range, the
    pairs drawn per axis."""
    def pair(lo_hi):
        return draw(st.lists(st.integers(*lo_hi), min_size=2, max_size=2))
    n, ci, co = draw(st.integers(*batch)), draw(st.integers(*in_channels)), draw(st.integers(*out_channels))
    k, s, p, d, hw = pair(kernel), pair(stride), pair(padding), pair(dilation), pair(side)
    assume(all(m + 2 * pp >= dd * (kk - 1) + 1 for m, pp, dd, kk in zip(hw, p, d, k)))
    return n, ci, co, k, s, p, d, hw
