"""A pre-norm transformer encoder in NumPy, with fastnorm's fused residual norms.

Each block is the pre-norm residual pair of GPT-2 / ViT-style encoders::

    s1  = x  + attn(LN1(x))          multi-head self-attention
    out = s1 + mlp(LN2(s1))          two linear layers with GELU between

and the stack ends with a final LayerNorm. Every residual add sits right
before a LayerNorm, so ``fastnorm.add_layer_norm`` does both in one pass:
it writes the residual stream ``s`` (``sum_out=``, updated in place) and the
normalized activations ``y`` (``out=``) together, and also adds the bias of
the linear layer that produced ``x`` (``residual_bias=``). Only the very
first norm is a plain ``fastnorm.layer_norm``.

``EncoderStack`` allocates every work buffer once, in its constructor, and
builds the views that attention needs (the per-head q, k, v slices of the
fused qkv projection, the transposed k, the head-interleaved context) at the
same time. ``forward`` then allocates no arrays: every matmul writes into a
buffer with ``np.matmul(..., out=...)``, softmax and GELU run in place through
ufuncs with ``out=``, reshapes are views, and the norms write into ``out=`` /
``sum_out=``. What remains is NumPy's own scratch for broadcasting ufuncs
(the bias adds, the softmax's row max and sum): a few buffers of
``np.getbufsize()`` elements (8192 by default), whatever the model's size.
:func:`traced_peak_bytes` measures this with ``tracemalloc`` (NumPy reports
its data allocations there).

The norms are pluggable so that the same stack can be timed with fastnorm,
with PyTorch's ``F.layer_norm`` on ``torch.from_numpy`` views (plus a NumPy
add), with plain NumPy norms, and with no normalization at all (the residual
add alone), which shows what share of the block the norms take.

Run ``python examples/transformer_block.py --help`` for the options.
"""
import argparse
import math
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

import fastnorm

try:  # optional: only for the PyTorch comparison
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised where torch is missing
    torch = None

EPS = 1e-5
GELU_C = math.sqrt(2.0 / math.pi)  # tanh approximation of GELU
GELU_A = 0.044715
# Seconds to wait before timing the norms alone, so that the BLAS threads of
# the last matmul have stopped spinning and left the cores.
BLAS_IDLE_PAUSE = 0.2


# --------------------------------------------------------------------------
# Normalization back ends: the two operations the stack needs.
#
#   layer_norm(x, w, b, out)                      -> y
#   add_layer_norm(x, r, w, b, rb, out, sum_out)  -> y, with sum_out = x + r + rb
#
# Each returns the array holding y; a back end may return a new array
# instead of writing `out` (PyTorch's functional API has no out=).
# --------------------------------------------------------------------------

class FastnormNorms:
    """fastnorm's kernels, writing straight into the preallocated buffers."""

    name = "fastnorm"

    def __init__(self, num_threads=None):
        self.num_threads = num_threads

    def layer_norm(self, x, w, b, out):
        return fastnorm.layer_norm(x, w, b, eps=EPS, out=out, num_threads=self.num_threads)

    def add_layer_norm(self, x, r, w, b, rb, out, sum_out):
        y, _ = fastnorm.add_layer_norm(x, r, w, b, residual_bias=rb, eps=EPS, out=out,
                                       sum_out=sum_out, num_threads=self.num_threads)
        return y


class TorchNorms:
    """torch.nn.functional.layer_norm on tensors sharing memory with the buffers.

    The residual add is done by NumPy in place; PyTorch allocates y.
    """

    name = "torch"

    def layer_norm(self, x, w, b, out):
        with torch.inference_mode():
            y = F.layer_norm(torch.from_numpy(x), (x.shape[-1],), torch.from_numpy(w),
                             torch.from_numpy(b), EPS)
        return y.numpy()

    def add_layer_norm(self, x, r, w, b, rb, out, sum_out):
        np.add(x, r, out=sum_out)
        np.add(sum_out, rb, out=sum_out)
        return self.layer_norm(sum_out, w, b, out)


class NumpyNorms:
    """LayerNorm the way it is usually written in NumPy (allocates temporaries)."""

    name = "numpy"

    def layer_norm(self, x, w, b, out):
        mu = x.mean(axis=-1, keepdims=True)
        d = x - mu
        var = np.mean(d * d, axis=-1, keepdims=True)
        return d / np.sqrt(var + EPS) * w + b

    def add_layer_norm(self, x, r, w, b, rb, out, sum_out):
        np.add(x, r, out=sum_out)
        np.add(sum_out, rb, out=sum_out)
        return self.layer_norm(sum_out, w, b, out)


class NoNorms:
    """No normalization: the residual add alone (y is the residual stream).

    Not a working model; it times everything in the stack except the norms.
    """

    name = "none"

    def layer_norm(self, x, w, b, out):
        return x

    def add_layer_norm(self, x, r, w, b, rb, out, sum_out):
        np.add(x, r, out=sum_out)
        np.add(sum_out, rb, out=sum_out)
        return sum_out


def make_norms(name, num_threads=None):
    if name == "fastnorm":
        return FastnormNorms(num_threads)
    if name == "torch":
        if torch is None:
            raise RuntimeError("the 'torch' norms need PyTorch, which is not importable")
        return TorchNorms()
    if name == "numpy":
        return NumpyNorms()
    if name == "none":
        return NoNorms()
    raise ValueError(f"unknown norms {name!r}")


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

class Layer:
    """Parameters of one encoder block. Linear weights are (in, out): y = x @ w + b."""

    def __init__(self, d_model, d_ff, dtype, rng):
        def linear(n_in, n_out):
            w = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
            return w.astype(dtype), (0.1 * rng.standard_normal(n_out)).astype(dtype)

        def norm():
            return ((1.0 + 0.1 * rng.standard_normal(d_model)).astype(dtype),
                    (0.1 * rng.standard_normal(d_model)).astype(dtype))

        self.ln1_w, self.ln1_b = norm()
        self.w_qkv, self.b_qkv = linear(d_model, 3 * d_model)  # q, k, v side by side
        self.w_o, self.b_o = linear(d_model, d_model)
        self.ln2_w, self.ln2_b = norm()
        self.w_1, self.b_1 = linear(d_model, d_ff)
        self.w_2, self.b_2 = linear(d_ff, d_model)


class EncoderStack:
    """`layers` pre-norm encoder blocks and a final LayerNorm, for inputs of one shape.

    The stack holds its weights and every buffer a forward pass needs, for
    inputs of shape (batch, seq, d_model) and the given dtype. ``forward``
    returns a view of an internal buffer, overwritten by the next call; copy
    it to keep it. After ``forward``, ``self.residual`` holds the residual
    stream leaving the last block (before the final norm), as (batch*seq, d_model)
    rows.
    """

    def __init__(self, batch, seq, d_model, heads, d_ff, layers, dtype=np.float32, *,
                 norms="fastnorm", num_threads=None, seed=0):
        if d_model % heads:
            raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
        self.batch, self.seq, self.d_model = batch, seq, d_model
        self.heads, self.d_ff, self.dtype = heads, d_ff, np.dtype(dtype)
        self.head_dim = d_model // heads
        self.num_threads = num_threads
        self.norms = make_norms(norms, num_threads) if isinstance(norms, str) else norms

        rng = np.random.default_rng(seed)
        self.layers = [Layer(d_model, d_ff, self.dtype, rng) for _ in range(layers)]
        self.lnf_w = (1.0 + 0.1 * rng.standard_normal(d_model)).astype(self.dtype)
        self.lnf_b = (0.1 * rng.standard_normal(d_model)).astype(self.dtype)

        B, T, D, H, Dh, N = batch, seq, d_model, heads, self.head_dim, batch * seq
        empty = lambda *shape: np.empty(shape, self.dtype)  # noqa: E731
        # Rows of activations: (N, ...) with N = batch * seq.
        self.h = empty(N, D)           # normalized activations, input of attn / mlp
        self.resid = empty(N, D)       # residual stream, updated in place
        self.proj = empty(N, D)        # output of attn / mlp, before its bias
        self.out = empty(N, D)         # output of the final norm
        self.qkv = empty(N, 3 * D)
        self.ff = empty(N, d_ff)       # hidden layer of the MLP
        self.ff_tmp = empty(N, d_ff)   # GELU's scratch
        self.scores = empty(B, H, T, T)
        self.row_max = empty(B, H, T, 1)
        self.row_sum = empty(B, H, T, 1)
        self.ctx = empty(B, T, H, Dh)  # attention output, heads interleaved as in (N, D)

        # Views, built once. qkv's columns are [q | k | v], each split into heads.
        qkv5 = self.qkv.reshape(B, T, 3, H, Dh)
        self.q = qkv5[:, :, 0].transpose(0, 2, 1, 3)   # (B, H, T, Dh)
        self.kT = qkv5[:, :, 1].transpose(0, 2, 3, 1)  # (B, H, Dh, T)
        self.v = qkv5[:, :, 2].transpose(0, 2, 1, 3)   # (B, H, T, Dh)
        self.ctx_heads = self.ctx.transpose(0, 2, 1, 3)  # (B, H, T, Dh), writes into ctx
        self.ctx_rows = self.ctx.reshape(N, D)
        self.scale = 1.0 / math.sqrt(Dh)  # a Python float keeps the ufuncs in self.dtype

    # -- the pieces ---------------------------------------------------------

    def _attention(self, h, p):
        """proj = MultiHeadSelfAttention(h) without the output bias (the next norm adds it)."""
        np.matmul(h, p.w_qkv, out=self.qkv)
        np.add(self.qkv, p.b_qkv, out=self.qkv)
        np.matmul(self.q, self.kT, out=self.scores)
        np.multiply(self.scores, self.scale, out=self.scores)
        self._softmax(self.scores)
        np.matmul(self.scores, self.v, out=self.ctx_heads)
        np.matmul(self.ctx_rows, p.w_o, out=self.proj)

    def _softmax(self, s):
        """Softmax over the last axis, in place."""
        np.max(s, axis=-1, keepdims=True, out=self.row_max)
        np.subtract(s, self.row_max, out=s)
        np.exp(s, out=s)
        np.sum(s, axis=-1, keepdims=True, out=self.row_sum)
        np.divide(s, self.row_sum, out=s)

    def _gelu(self, x):
        """GELU, tanh approximation, in place: x * (0.5 + 0.5 * tanh(c * (x + a * x^3)))."""
        t = self.ff_tmp
        np.multiply(x, x, out=t)
        np.multiply(t, GELU_C * GELU_A, out=t)
        np.add(t, GELU_C, out=t)
        np.multiply(t, x, out=t)            # c * (x + a * x^3)
        np.tanh(t, out=t)
        np.multiply(t, 0.5, out=t)
        np.add(t, 0.5, out=t)
        np.multiply(x, t, out=x)

    def _mlp(self, h, p):
        """proj = gelu(h @ w_1 + b_1) @ w_2, without the output bias."""
        np.matmul(h, p.w_1, out=self.ff)
        np.add(self.ff, p.b_1, out=self.ff)
        self._gelu(self.ff)
        np.matmul(self.ff, p.w_2, out=self.proj)

    def _next_norm(self, i):
        """Weight, bias and output buffer of the norm that follows block i's MLP."""
        if i + 1 < len(self.layers):
            nxt = self.layers[i + 1]
            return nxt.ln1_w, nxt.ln1_b, self.h
        return self.lnf_w, self.lnf_b, self.out

    def _rows(self, x):
        x = np.asarray(x)
        shape = (self.batch, self.seq, self.d_model)
        if x.shape != shape or x.dtype != self.dtype or not x.flags.c_contiguous:
            raise ValueError(f"x must be a C-contiguous {self.dtype} array of shape {shape}, "
                             f"got {x.dtype} {x.shape}")
        return x.reshape(self.batch * self.seq, self.d_model)  # a view

    # -- the passes -----------------------------------------------------------

    def forward(self, x):
        """The stack on x of shape (batch, seq, d_model); returns a view of a buffer."""
        x = self._rows(x)
        norms = self.norms
        first = self.layers[0]
        y = norms.layer_norm(x, first.ln1_w, first.ln1_b, out=self.h)
        residual = x  # the first block reads x; afterwards the stream lives in self.resid
        for i, p in enumerate(self.layers):
            self._attention(y, p)
            # s1 = x + attn(LN1(x)), y = LN2(s1)
            y = norms.add_layer_norm(self.proj, residual, p.ln2_w, p.ln2_b, p.b_o,
                                     out=self.h, sum_out=self.resid)
            residual = self.resid
            self._mlp(y, p)
            # out = s1 + mlp(LN2(s1)), y = next block's LN1(out) (or the final norm)
            w, b, buf = self._next_norm(i)
            y = norms.add_layer_norm(self.proj, self.resid, w, b, p.b_2,
                                     out=buf, sum_out=self.resid)
        return y.reshape(self.batch, self.seq, self.d_model)

    def norms_only(self, x):
        """Only the 2 * layers + 1 norm calls of ``forward``, on the same buffers.

        Times the norms on their own; the values in the buffers are whatever
        the last ``forward`` left there.
        """
        x = self._rows(x)
        norms = self.norms
        first = self.layers[0]
        norms.layer_norm(x, first.ln1_w, first.ln1_b, out=self.h)
        residual = x
        for i, p in enumerate(self.layers):
            norms.add_layer_norm(self.proj, residual, p.ln2_w, p.ln2_b, p.b_o,
                                 out=self.h, sum_out=self.resid)
            residual = self.resid
            w, b, buf = self._next_norm(i)
            norms.add_layer_norm(self.proj, self.resid, w, b, p.b_2, out=buf,
                                 sum_out=self.resid)

    @property
    def residual(self):
        """The residual stream after the last block (before the final norm), as rows."""
        return self.resid

    @property
    def activation_bytes(self):
        """Size of one (batch*seq, d_model) activation buffer."""
        return self.h.nbytes


# --------------------------------------------------------------------------
# Reference: the same model written the plain way, in float64
# --------------------------------------------------------------------------

def _reference_layer_norm(x, w, b, norm):
    if norm == "torch":
        y = F.layer_norm(torch.from_numpy(x), (x.shape[-1],), torch.from_numpy(w),
                         torch.from_numpy(b), EPS)
        return y.numpy()
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


def reference_forward(stack, x, norm="numpy"):
    """The stack's function, computed in float64 with allocating NumPy code.

    norm is "numpy" (LayerNorm from its formula) or "torch" (F.layer_norm).
    Returns (output, residual stream after the last block), both float64 of
    shape (batch, seq, d_model).
    """
    if norm == "torch" and torch is None:
        raise RuntimeError("norm='torch' needs PyTorch")
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    B, T, D, H = stack.batch, stack.seq, stack.d_model, stack.heads
    Dh = D // H

    def heads(a):  # (B, T, D) -> (B, H, T, Dh)
        return a.reshape(B, T, H, Dh).transpose(0, 2, 1, 3)

    def ln(a, w, b):
        return _reference_layer_norm(a, f64(w), f64(b), norm)

    x = f64(x)
    for p in stack.layers:
        h = ln(x, p.ln1_w, p.ln1_b)
        q, k, v = np.split(h @ f64(p.w_qkv) + f64(p.b_qkv), 3, axis=-1)
        scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / math.sqrt(Dh)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = (probs @ heads(v)).transpose(0, 2, 1, 3).reshape(B, T, D)
        x = x + ctx @ f64(p.w_o) + f64(p.b_o)

        h = ln(x, p.ln2_w, p.ln2_b)
        a = h @ f64(p.w_1) + f64(p.b_1)
        a = 0.5 * a * (1.0 + np.tanh(GELU_C * (a + GELU_A * a ** 3)))
        x = x + a @ f64(p.w_2) + f64(p.b_2)
    return ln(x, stack.lnf_w, stack.lnf_b), x


# --------------------------------------------------------------------------
# Allocation check and timing
# --------------------------------------------------------------------------

def traced_peak_bytes(fn, *args):
    """Peak memory traced by tracemalloc while fn(*args) runs, above what was
    allocated before the call. NumPy reports its array data to tracemalloc,
    so a new activation-sized array inside fn shows up here."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return peak - before


def time_round_robin(fns, repeats):
    """Seconds of each run of each callable, {name: [t_1, ..., t_repeats]}.
    Every repeat runs them all in turn, so a slow phase of a noisy machine
    hits all of them alike, and runs of one round can be compared in pairs."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _thread_summary(num_threads):
    parts = [f"fastnorm {num_threads}"]
    try:
        from threadpoolctl import threadpool_info
        blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        if blas:
            parts.append(f"BLAS (NumPy's matmul) {blas[0]}")
    except ImportError:
        pass
    if torch is not None:
        parts.append(f"torch {torch.get_num_threads()}")
    env = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
           if k in os.environ]
    return ", ".join(parts) + (f" ({', '.join(env)})" if env else "")


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--d-ff", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for fastnorm and PyTorch (default: fastnorm's default)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of each variant")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    threads = args.threads or fastnorm.get_num_threads()
    if torch is None:
        return _main(args, threads)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _main(args, threads)
    finally:
        torch.set_num_threads(torch_threads)


def _main(args, threads):
    dtype = np.dtype(args.dtype)
    stack = EncoderStack(args.batch, args.seq, args.d_model, args.heads, args.d_ff, args.layers,
                         dtype, num_threads=threads, seed=args.seed)
    x = np.random.default_rng(args.seed + 1).standard_normal(
        (args.batch, args.seq, args.d_model)).astype(dtype)

    print(f"EncoderStack: batch {args.batch}, seq {args.seq}, d_model {args.d_model}, "
          f"heads {args.heads}, d_ff {args.d_ff}, layers {args.layers}, {dtype}")
    print(f"threads: {_thread_summary(threads)}")

    # Correctness: the fastnorm stack against the float64 reference.
    y = stack.forward(x).copy()
    ref_norm = "torch" if torch is not None else "numpy"
    ref, _ = reference_forward(stack, x, ref_norm)
    err = float(np.max(np.abs(y - ref)))
    tol = 1e-3 if dtype == np.float32 else 1e-9
    ok = err <= tol
    print(f"max |fastnorm stack - float64 reference ({ref_norm} norms)| = {err:.2e} "
          f"({'ok' if ok else 'MISMATCH'}, tolerance {tol:g})")
    peak = traced_peak_bytes(stack.forward, x)
    print(f"allocated during one forward (tracemalloc peak): {peak} bytes; "
          f"one activation buffer is {stack.activation_bytes} bytes")

    # Timing: the same weights and buffers, the norms swapped.
    variants = {f"fastnorm, {threads} thread{'s' if threads > 1 else ''}":
                make_norms("fastnorm", threads)}
    if threads > 1:
        variants["fastnorm, 1 thread"] = make_norms("fastnorm", 1)
    if torch is not None:
        variants[f"torch F.layer_norm + np.add, {threads} thread{'s' if threads > 1 else ''}"] = \
            make_norms("torch")
    variants["numpy (mean, var, formula)"] = make_norms("numpy")
    variants["none (residual add only)"] = make_norms("none")

    def runner(norms, method):
        def run():
            stack.norms = norms
            method(x)
        return run

    stacks = {name: runner(n, stack.forward) for name, n in variants.items()}
    for fn in stacks.values():  # warm-up
        fn()
    runs = time_round_robin(stacks, args.repeats)
    names = list(variants)
    t_stack = {name: statistics.median(t) for name, t in runs.items()}
    # The norms' share of the stack: each run minus the run without norms of
    # the same round, median over the rounds.
    t_in_stack = {name: statistics.median(a - b for a, b in zip(runs[name], runs[names[-1]]))
                  for name in names}
    # The norms by themselves, each in its own loop.
    t_norms = {}
    for name, norms in variants.items():
        time.sleep(BLAS_IDLE_PAUSE)
        fn = runner(norms, stack.norms_only)
        fn()
        t_norms[name] = statistics.median(time_round_robin({name: fn}, args.repeats)[name])
    stack.norms = make_norms("fastnorm", threads)

    base, floor = t_stack[names[0]], t_stack[names[-1]]
    ms = lambda t: f"{t * 1e3:.2f}"  # noqa: E731
    print(f"\nmedians of {args.repeats} runs, ms. 'norms in stack': stack minus the stack "
          f"without norms (run in the same round);\n'norms alone': the {2 * args.layers + 1} "
          f"norm calls of one forward by themselves")
    print("| norms | stack | norms in stack | norms alone | stack / fastnorm stack |")
    print("|---|---|---|---|---|")
    for name in names[:-1]:
        st, ns = t_stack[name], t_in_stack[name]
        print(f"| {name} | {ms(st)} | {ms(ns)} ({ns / st:.0%}) "
              f"| {ms(t_norms[name])} | {st / base:.2f} |")
    print(f"| {names[-1]} | {ms(floor)} | - | {ms(t_norms[names[-1]])} | {floor / base:.2f} |")
    if torch is not None:
        tname = names[2 if threads > 1 else 1]
        print(f"\ntorch / fastnorm ({threads} threads each): stack "
              f"{t_stack[tname] / base:.2f}x, norms alone {t_norms[tname] / t_norms[names[0]]:.2f}x")
    in_stack = t_in_stack[names[0]]
    if threads > 1 and in_stack > 5 * t_norms[names[0]] + 2e-3:
        print(f"\nThe {threads}-thread norms cost {in_stack / t_norms[names[0]]:.0f}x more inside the "
              f"stack than alone: their threads compete with the BLAS threads of the next matmul\n"
              f"for the cores. Try --threads 1.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
