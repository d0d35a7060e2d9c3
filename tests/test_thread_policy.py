"""The thread-count policy (core/kernels/launch.py), driven with made-up timings and a
fake clock: deterministic, no real time measured."""

import threading

import numba
import numpy as np
import pytest

from cnnplay.core.kernels import launch
from cnnplay.core.kernels.launch import ThreadPolicy


class Machine:
    """A fake machine: how long one call takes on n threads, and a clock that
    advances by the time of every call it runs."""

    def __init__(self, t_parallel, t_serial):
        self.now = 0.0
        self.t = {2: t_parallel, 1: t_serial}

    def clock(self):
        return self.now

    def run(self, policy, key="k", calls=1):
        total = 0.0
        used = []
        for _ in range(calls):
            n = policy.choose(key)
            policy.record(key, n, self.t[n])
            self.now += self.t[n] + 0.01  # a little time between calls
            total += self.t[n]
            used.append(n)
        return total, used


def test_idle_machine_runs_parallel_after_two_serial_estimates():
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    _, used = m.run(p, calls=6)
    assert used == [2, 2, 1, 2, 1, 2]  # a warm-up, then each count twice, alternately
    assert p.choice("k") == 2


def test_a_slow_first_call_is_a_warm_up_not_a_measurement():
    # the first call packs the weights and touches new memory: here 10x a later
    # parallel call, slower than the serial probe, which must not win because of it
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    assert p.choose("k") == 2
    p.record("k", 2, 0.050)
    m.now += 0.06
    _, used = m.run(p, calls=20)
    assert used[:5] == [2, 1, 2, 1, 2] and set(used[4:]) == {2}
    assert p.choice("k") == 2


def test_busy_machine_falls_back_to_one_thread_and_stays_within_1_2x_of_serial():
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=20)
    m.t = {2: 0.072, 1: 0.010}  # the other core got busy: parallel 8x slower than serial
    total, used = m.run(p, calls=2000)
    assert p.choice("k") == 1
    assert total <= 1.2 * 2000 * m.t[1]
    # it still looks again now and then, less and less often
    probes = [i for i, n in enumerate(used) if n == 2 and (i == 0 or used[i - 1] != 2)]  # each probe's start
    assert len(probes) >= 3
    assert used.count(2) <= 2 * len(probes)  # a probe is two calls (the first wakes the threads)
    gaps = np.diff(probes[1:])
    assert (gaps[1:] >= gaps[:-1]).all()


def test_reaction_to_a_busy_machine_is_immediate():
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=10)
    m.t = {2: 0.072, 1: 0.010}
    _, used = m.run(p, calls=4)
    assert used == [2, 2, 1, 1]  # two slow calls in a row (one could be a stall), then serial


def test_two_slow_parallel_calls_that_still_beat_serial_do_not_switch():
    # a shared virtual machine runs a few calls in a row 2-3x slower now and then
    # (wake-ups after a pause, a neighbour's burst): still faster than the serial
    # count, they must not send the kernel to one thread on the strength of the
    # serial count's old best
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=10)
    used, chosen = [], []
    for seconds in (0.013, 0.013) + (0.005,) * 8:
        n = p.choose("k")
        used.append(n)
        p.record("k", n, seconds if n == 2 else m.t[1])
        chosen.append(p.choice("k"))
        m.now += 0.015
    assert set(chosen) == {2}  # never switched
    assert used == [2, 2, 1, 1] + [2] * 6  # the serial count probed (a wake-up call and one measured), no more


def test_a_single_stalled_call_does_not_change_the_count():
    # a shared virtual machine stalls a call now and then (here every 6th, 5x slower):
    # the counts chosen are those of the same calls without the stalls (the periodic
    # probes included); acting on a stall ran a conv on one thread for seconds
    def counts(stalls: bool):
        m = Machine(t_parallel=0.005, t_serial=0.009)
        p = ThreadPolicy(threads=2, clock=m.clock)
        used = []
        for i in range(600):
            slow = stalls and i > 10 and i % 6 == 0
            n = p.choose("k")
            p.record("k", n, m.t[n] * (5 if slow else 1))
            m.now += 0.015  # the clock advances the same in both
            used.append(n)
        return used, p.choice("k")

    steady, stalled = counts(False), counts(True)
    assert stalled == steady and steady[1] == 2
    assert stalled[0].count(1) <= 8  # the probes only


def test_back_to_parallel_when_the_machine_is_idle_again():
    m = Machine(t_parallel=0.072, t_serial=0.010)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=50)
    assert p.choice("k") == 1
    m.t = {2: 0.005, 1: 0.009}
    m.now += 1000.0  # long enough for the next probe at any backoff
    _, used = m.run(p, calls=3)
    assert used == [2, 2, 2] and p.choice("k") == 2



def test_after_a_short_slow_spell_parallel_returns_within_the_first_probe_wait():
    # the timings of a real trace (wide-128's first conv, 2 ms between calls): two
    # threads 0.9 ms, one 1.75 ms; then for about 30 calls the parallel ones took
    # 2.0-2.4 ms (the other vCPU taken for a moment) and the serial ones stayed. The
    # probes brought forward by those slow calls lost; they used to double the wait,
    # so after the switch to one thread the next probe came 8 s later
    m = Machine(t_parallel=0.0009, t_serial=0.00175)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=20)
    assert p.choice("k") == 2
    m.t = {2: 0.0022, 1: 0.00175}
    m.run(p, calls=30)
    assert p.choice("k") == 1  # slower on two threads for a while: serial
    m.t = {2: 0.0009, 1: 0.00175}  # the spell is over
    start = m.now
    while p.choice("k") == 1 and m.now - start < 60:
        m.run(p)
    assert p.choice("k") == 2
    assert m.now - start <= ThreadPolicy.PROBE_SECONDS + 0.1


def test_first_estimates_slowed_by_the_warm_up_are_corrected_within_the_confirmation_wait():
    # a real trace (a 64->64 3x3 layer's backward at batch 16, the bench's first
    # training steps): after the warm-up call, two threads took 25.8 and 25.0 ms,
    # one thread 22.9 and 22.2; then two threads 15 ms and one 16.6. The layer
    # used to stay on one thread until the first periodic probe, 2 s later
    m = Machine(t_parallel=0.015, t_serial=0.0166)
    p = ThreadPolicy(threads=2, clock=m.clock)
    for seconds in (0.0173, 0.0258, 0.0229, 0.0250, 0.0222):
        n = p.choose("k")
        p.record("k", n, seconds)
        m.now += seconds + 0.05  # the rest of a training step
    assert p.choice("k") == 1
    decided = m.now
    while p.choice("k") == 1 and m.now - decided < 10:
        m.run(p)
        m.now += 0.05
    assert p.choice("k") == 2
    assert m.now - decided <= ThreadPolicy.CONFIRM_SECONDS + 0.3  # the wait, then two probe calls


def test_a_confirmation_that_agrees_keeps_the_periodic_schedule():
    # the check after the first estimates is not a periodic probe: losing it must not
    # double the wait before the next one
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=5)
    decided = m.now
    serial_at = []
    while m.now - decided < 2 * ThreadPolicy.PROBE_SECONDS + 0.5:
        if m.run(p)[1] == [1]:
            serial_at.append(m.now - decided)
    assert p.choice("k") == 2
    confirm, periodic = serial_at[:2], serial_at[2:4]
    assert len(serial_at) == 4  # the confirmation and one periodic probe, two calls each
    assert ThreadPolicy.CONFIRM_SECONDS <= confirm[0] <= ThreadPolicy.CONFIRM_SECONDS + 0.1
    assert ThreadPolicy.PROBE_SECONDS <= periodic[0] <= ThreadPolicy.PROBE_SECONDS + 0.1


def test_memory_bound_kernel_where_threads_do_not_help_runs_serially():
    m = Machine(t_parallel=0.022, t_serial=0.017)  # the 16x1024x1024 ReLU of issue 18
    p = ThreadPolicy(threads=2, clock=m.clock)
    total, used = m.run(p, calls=500)
    assert p.choice("k") == 1 and used[-1] == 1
    assert total <= 1.05 * 500 * m.t[1]


def test_close_timings_do_not_flip_flop():
    m = Machine(t_parallel=0.0100, t_serial=0.0105)  # within the 10 % margin
    p = ThreadPolicy(threads=2, clock=m.clock)
    _, used = m.run(p, calls=200)
    assert p.choice("k") == 2
    switches = sum(1 for a, b in zip(used, used[1:]) if a != b)
    assert switches <= 2 * 10  # only the (backed-off) probes


def test_keys_are_independent_and_one_thread_machines_never_probe():
    m = Machine(t_parallel=0.005, t_serial=0.009)
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, key="a", calls=5)
    assert p.choice("a") == 2 and p.choice("b") is None and p.choose("b") == 2
    one = ThreadPolicy(threads=1, clock=m.clock)
    assert one.choose("a") == 1


def test_wrappers_launch_on_the_chosen_count_and_only_the_outermost_records(monkeypatch):
    class Stub:
        def __init__(self):
            self.recorded = []

        def choose(self, key):
            return 1

        def record(self, key, n, seconds):
            self.recorded.append((key, n))

    stub = Stub()
    monkeypatch.setattr(launch, "POLICY", stub)
    monkeypatch.setattr(launch, "numpy_meanwhile", lambda: False)
    seen = []

    @launch.one_at_a_time
    def inner(a):
        seen.append(numba.get_num_threads())
        return a

    @launch.one_at_a_time
    def outer(a, flag=None):
        return inner(a)

    x = np.zeros((3, 4), np.float32)
    outer(x, flag=2.5)
    assert seen == [1]
    assert len(stub.recorded) == 1
    (name, args, kwargs), n = stub.recorded[0]
    assert name.endswith("outer") and args == ((3, 4),) and kwargs == (2.5,) and n == 1
    launch._use_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("threads", [1, 2])
def test_set_threads_reaches_numba(threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 threads")
    launch._use_threads(threads)
    assert numba.get_num_threads() == threads
    launch._use_threads(numba.config.NUMBA_NUM_THREADS)


def test_a_probe_does_not_count_the_call_that_wakes_the_idle_threads():
    # after a stretch on one thread the other threads are idle; on a virtual machine
    # waking them makes the first parallel call slower than a serial one
    m = Machine(t_parallel=0.072, t_serial=0.010)  # busy: serial wins
    p = ThreadPolicy(threads=2, clock=m.clock)
    m.run(p, calls=50)
    assert p.choice("k") == 1
    m.now += 1000.0  # the next probe is due; the machine is idle again
    used, last = [], 1
    for _ in range(6):
        n = p.choose("k")
        wake = 0.015 if n == 2 and last == 1 else 0.0
        p.record("k", n, {2: 0.005, 1: 0.009}[n] + wake)
        m.now += 0.02
        used.append(n)
        last = n
    assert used == [2] * 6 and p.choice("k") == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_a_winograd_layer_multiplies_on_the_count_the_policy_chose(monkeypatch, threads):
    # A channel-heavy 3x3 layer spends most of its time in numpy's matmul (OpenBLAS):
    # when the policy picks one thread (a busy machine), BLAS must run on one too.
    from cnnplay.core.kernels import blas, conv, products512, winograd
    if not blas.available():
        pytest.skip("numpy's BLAS is not an OpenBLAS whose thread count can be set")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 threads")
    monkeypatch.setattr(launch, "numpy_meanwhile", lambda: False)
    monkeypatch.setattr(products512, "avx512", lambda: False)  # the products by BLAS, as without AVX-512
    x = np.random.default_rng(0).standard_normal((1, 64, 8, 8)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
    conv.conv2d_batch(x, w, None, 1, 1, 1, algorithm="winograd")  # compiled / loaded before the patch

    class Fixed:
        def choose(self, key):
            return threads

        def record(self, key, n, seconds):
            pass

    class CountingNumpy:  # blas's numpy, whose matmul notes BLAS's thread count and its caller
        def __init__(self):
            self.seen = []

        def __getattr__(self, name):
            return getattr(np, name)

        def matmul(self, *args, **kwargs):
            self.seen.append((blas.threads(), threading.get_ident()))
            return np.matmul(*args, **kwargs)

    other = 3 - threads
    launch._use_threads(other)  # BLAS on the other count before the call
    assert blas.threads() == other
    counting = CountingNumpy()
    monkeypatch.setattr(launch, "POLICY", Fixed())
    monkeypatch.setattr(blas, "np", counting)
    conv.conv2d_batch(x, w, None, 1, 1, 1, algorithm="winograd")
    # one thread: one product call on one BLAS thread; two: the batch of products
    # split in two, each part on its own thread with a single-threaded BLAS
    assert counting.seen and {n for n, _ in counting.seen} == {1}
    assert len({t for _, t in counting.seen}) == threads and len(counting.seen) % threads == 0
    assert blas.threads() == threads  # the policy's count again after the split
    monkeypatch.undo()
    launch._use_threads(numba.config.NUMBA_NUM_THREADS)
    assert blas.threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch, shared", [(1, False), (3, False), (16, False), (5, True), (9, True)])
def test_batched_products_split_across_threads_match_plain_loops(threads, batch, shared):
    # blas.batched_matmul splits a batch of products between threads: each part
    # must land in its own slice of out, whatever the split, with a shared left
    # matrix (a 1x1 convolution's weights) as with one per product (Winograd's)
    from cnnplay.core.kernels import blas
    rng = np.random.default_rng(batch)
    a = rng.standard_normal((7, 5) if shared else (batch, 7, 5)).astype(np.float32)
    b = rng.standard_normal((batch, 5, 9)).astype(np.float32)
    out = np.full((batch, 7, 9), np.nan, np.float32)
    before = blas.threads()
    blas.set_threads(threads)
    try:
        got = blas.batched_matmul(a, b, out)
        after = blas.threads()
    finally:
        blas.set_threads(before or 1)
    want = np.zeros((batch, 7, 9))
    for i in range(batch):
        ai = a if shared else a[i]
        for r in range(7):
            for c in range(9):
                want[i, r, c] = sum(float(ai[r, k]) * float(b[i, k, c]) for k in range(5))
    assert got is out
    assert np.max(np.abs(out - want)) <= 1e-5 * np.max(np.abs(want))
    assert after == (threads if blas.available() else before)
