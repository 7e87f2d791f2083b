#!/usr/bin/env python
"""Conv2D's strategies layer by layer: the time of one training step (forward and
backward) of every convolution of bench_cnn's two models, with each strategy that can
run it, on the kernels of this process's vector width.

``Conv2D._choose`` picks one strategy per layer (Pointwise, RowTiles, Direct, Im2col)
by thresholds measured on one instruction set; this script measures all of them on
the instruction set it runs on (``benchmarks/avx2_env.sh`` for AVX2 on an AVX-512
machine), so that each threshold can be checked per width. Each (layer, strategy) is
timed ``--repeats`` times, in rotation with the other strategies of the layer, and the
median is printed with the strategy ``_choose`` takes marked ``*``.

Usage::

    python benchmarks/bench_conv_paths.py --threads 1
    benchmarks/avx2_env.sh python benchmarks/bench_conv_paths.py --threads 1
    BPNN_DISABLE_NUMBA=1 python benchmarks/bench_conv_paths.py --threads 1   # NumPy fallbacks
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _harness import limit_threads, machine_header, threads_from_argv, write_json  # beside this script

if __name__ == "__main__":
    threads_from_argv(sys.argv[1:])  # --threads reaches numba too: before NumPy and bpnn load

# (name, in_channels, H, W, out_channels, kernel, stride, padding): the convolutions of
# bench_cnn's LeNet-5 and residual CNN, batch 64; a model's first layer (one input
# channel) is timed as training runs it, without the input gradient
LAYERS = [
    ("lenet5 conv1", 1, 28, 28, 6, 5, 1, 2),
    ("lenet5 conv2", 6, 14, 14, 16, 5, 1, 0),
    ("resnet stem", 1, 28, 28, 16, 3, 1, 1),
    ("resnet block1", 16, 28, 28, 16, 3, 1, 1),
    ("resnet block2 s2", 16, 28, 28, 32, 3, 2, 1),
    ("resnet block2", 32, 14, 14, 32, 3, 1, 1),
    ("resnet shortcut 1x1 s2", 16, 28, 28, 32, 1, 2, 0),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="threads (BLAS, numba; default all)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import numpy as np

    import bpnn  # noqa: F401 - loads the BLAS the header reports
    from bpnn.nn import Conv2D
    from bpnn.nn import _conv_strategies as strategies

    _limiter = limit_threads(args.threads) if args.threads else None  # noqa: F841 - keep the limits
    info = machine_header(args.threads)
    rng = np.random.default_rng(0)
    results = []
    print(f"\n{'layer':24s}{'strategy':11s}{'ms/step':>9s}{'fwd':>8s}{'bwd':>8s}")
    for name, c, h, w, o, k, s, p in LAYERS:
        x = rng.standard_normal((args.batch, c, h, w)).astype(np.float32)
        conv = Conv2D(o, k, stride=s, padding=p, use_bias=False)
        conv.build((c, h, w), np.random.default_rng(1), np.dtype(np.float32))
        chosen = conv._choose(x.transpose(0, 2, 3, 1))
        candidates = [strategies.Im2col, strategies.RowTiles]
        if strategies.Direct.applies(np.float32, o):
            candidates.append(strategies.Direct)
        if conv._pointwise:
            candidates.append(strategies.Pointwise)
        times = {cls: ([], []) for cls in candidates}
        g = None
        for rep in range(args.repeats + 1):
            for cls in candidates[rep % len(candidates):] + candidates[:rep % len(candidates)]:
                conv._choose = lambda xl, cls=cls: cls
                t0 = time.perf_counter()
                y = conv.forward(x, training=True)
                t1 = time.perf_counter()
                if g is None:
                    g = rng.standard_normal(y.shape).astype(np.float32)
                conv.backward(g, input_grad=c > 1)
                t2 = time.perf_counter()
                if rep:  # the first round warms up (compilation, buffers)
                    times[cls][0].append(t1 - t0)
                    times[cls][1].append(t2 - t1)
        for cls, (f, b) in times.items():
            fm, bm = statistics.median(f), statistics.median(b)
            mark = "*" if cls is chosen else " "
            print(f"{name:24s}{mark}{cls.__name__:10s}{1e3 * (fm + bm):9.2f}{1e3 * fm:8.2f}{1e3 * bm:8.2f}", flush=True)
            results.append({"layer": name, "strategy": cls.__name__, "chosen": cls is chosen,
                            "forward_ms": 1e3 * fm, "backward_ms": 1e3 * bm})
    print("(* = the strategy Conv2D._choose takes; medians of --repeats steps, batch "
          f"{args.batch}, float32; the 1-channel first layers without the input gradient, as in training)")
    write_json(args.json, {"machine": info, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
