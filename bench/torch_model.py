"""A PyTorch transformer encoder with its LayerNorms swapped for fastnorm's,
against the stock one: the model's forward and forward + backward, and the
norm operators' own share of that time from torch.profiler.

    python bench/torch_model.py                   # d_model 384 and 768, 1 and 2 threads
    python bench/torch_model.py --quick           # fewer repeats, d_model 384 only
    python bench/torch_model.py --d-model 768 --threads 2 --layers 4 --norm-first

The model: ``torch.nn.TransformerEncoder`` of ``--layers`` layers (d_model,
d_model / 64 heads, feed-forward 4 * d_model, dropout 0, batch first), input
(batch 8, sequence 128, d_model) in float32. ``fastnorm.torch.replace_norms``
swaps a deep copy; both models hold the same weights.

- forward: eval mode under ``torch.inference_mode()``. PyTorch's fused
  encoder-layer fast path (which, for a batch-first layer in eval mode
  without gradients, runs the whole layer in one kernel and never calls the
  norm modules) is turned off with ``torch.backends.mha.set_fastpath_enabled``
  so that both models run the same per-module graph;
- forward + backward: train mode, ``model(x).sum().backward()`` with the
  gradients set to None before each step.

Threads: ``torch.set_num_threads(t)``; fastnorm's operators follow
``torch.get_num_threads()``. Times are medians of ``--repeat`` runs after
warm-up, the two models' steps interleaved; the ratio is stock / fastnorm
(above 1: the swapped model is faster).

The profile: one forward + backward of each model under ``torch.profiler``;
the time of the norm operators (fastnorm::layer_norm and
fastnorm::layer_norm_backward; aten::layer_norm and
aten::native_layer_norm_backward), inclusive of their children, per step.
"""
import argparse
import copy
import statistics
import time

import torch
from torch import nn

import fastnorm.torch as ft

BATCH, SEQ = 8, 128
NORM_OPS = {
    "fastnorm": ("fastnorm::layer_norm", "fastnorm::layer_norm_backward"),
    "torch": ("aten::layer_norm", "aten::native_layer_norm_backward"),
}


def make_models(d_model, layers, norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model, d_model // 64, dim_feedforward=4 * d_model,
                                       dropout=0.0, batch_first=True, norm_first=norm_first)
    stock = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model),
                                  enable_nested_tensor=False)
    swapped = copy.deepcopy(stock)
    replaced, skipped = ft.replace_norms(swapped)
    assert replaced and not skipped, (replaced, skipped)
    return stock, swapped


def forward_step(model, x):
    def step():
        with torch.inference_mode():
            model(x)
    return step


def train_step(model, x):
    def step():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    return step


def median_times(steps, repeat, warmup):
    """The median time of each step, the steps run in turn (interleaved, the
    order alternating) so that a slow spell of a shared machine falls on all
    of them alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for r in range(repeat):
        order = range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            t0 = time.perf_counter()
            steps[i]()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def norm_time(model, x, ops):
    """Milliseconds per training step spent in the norm operators ops."""
    step = train_step(model, x)
    step()  # warm
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    total = 0.0
    for event in prof.key_averages():
        if event.key in ops:
            total += event.cpu_time_total
    return total / 1e3


def check_same(stock, swapped, x):
    with torch.inference_mode():
        err = (stock(x) - swapped(x)).abs().max().item()
    assert err < 1e-3, f"the models differ by {err}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--norm-first", action="store_true", help="pre-norm layers")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="d_model 384, 5 repeats, 1 warm-up (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.d_model, args.repeat, args.warmup = [384], 5, 1

    torch.backends.mha.set_fastpath_enabled(False)
    print(f"torch {torch.__version__}; batch {BATCH}, sequence {SEQ}, {args.layers} layers, "
          f"{'pre' if args.norm_first else 'post'}-norm, float32; median of {args.repeat}")
    head = (f"{'d_model':>7} {'thr':>3} | {'fwd stock':>9} {'fwd fn':>9} {'ratio':>5} | "
            f"{'f+b stock':>9} {'f+b fn':>9} {'ratio':>5} | {'norm ms stock':>13} "
            f"{'norm ms fn':>10}")
    print(head)
    print("-" * len(head))
    for d in args.d_model:
        stock, swapped = make_models(d, args.layers, args.norm_first)
        x = torch.randn(BATCH, SEQ, d)
        for t in args.threads:
            torch.set_num_threads(t)
            stock.eval()
            swapped.eval()
            check_same(stock, swapped, x)
            fwd = median_times([forward_step(m, x) for m in (stock, swapped)], args.repeat,
                               args.warmup)
            stock.train()
            swapped.train()
            fb = median_times([train_step(m, x) for m in (stock, swapped)], args.repeat,
                              args.warmup)
            norms = [norm_time(stock, x, NORM_OPS["torch"]),
                     norm_time(swapped, x, NORM_OPS["fastnorm"])]
            print(f"{d:>7} {t:>3} | {fwd[0] * 1e3:>7.2f}ms {fwd[1] * 1e3:>7.2f}ms "
                  f"{fwd[0] / fwd[1]:>5.2f} | {fb[0] * 1e3:>7.2f}ms {fb[1] * 1e3:>7.2f}ms "
                  f"{fb[0] / fb[1]:>5.2f} | {norms[0]:>13.3f} {norms[1]:>10.3f}")


if __name__ == "__main__":
    main()
