#!/usr/bin/env python
"""CNN training benchmark: bpnn vs PyTorch (CPU), with a per-layer time split.

Two configurations, each trained for ONE epoch with Adam (lr 1e-3) and softmax
cross-entropy, batch 64, fresh shuffle, float32:

    lenet5      LeNet-5 (ReLU/max-pool variant) on the first 10,000 MNIST training images
    resnet      a small residual CNN (conv-BN-ReLU stem, two residual blocks of 3×3
                convolutions with BatchNorm, the second with a stride-2 1×1 projection
                shortcut, global average pooling, Dense) on the first 2,560 images

Each framework runs in its own worker subprocess with the same thread count; the parent
asks the workers for one epoch at a time, alternating frameworks (and rotating their
order) within every repeat so that both see the same machine noise. The first epoch of
every worker is a warm-up (numba compilation, lazy imports, allocator) and is not
timed. After the timed epochs each worker runs one more epoch with per-layer timers
(hooks), which gives the per-layer split of a training step: forward and backward time
of every top-level layer, in ms per step.

Memory (Linux): the peak resident set size of the worker (imports, data and training
included: ``VmHWM``), and the working set of an epoch (peak RSS during a timed epoch
minus the RSS before it).

Usage::

    python benchmarks/bench_cnn.py                 # both configs, 5 repeats
    python benchmarks/bench_cnn.py --quick         # smoke test: 1 repeat, fewer samples
    python benchmarks/bench_cnn.py --configs lenet5 --repeats 9 --json out.json
    python benchmarks/bench_cnn.py --kernels       # numba kernels vs their NumPy fallbacks

MNIST is read from ``--data-dir`` (default ``$BPNN_MNIST_DIR`` or ../shared/data/mnist);
without it the images are synthetic (noted in the output). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time

from _harness import (  # beside this script
    MNIST_DIR, WORKER_FLAG, Usage, Worker, commands, kernel_info, kernel_line, layer_paths, least_disturbed,
    machine_info, paired_ratios, proc_status_kib, rotation, send, write_json,
)

CONFIGS = {
    "lenet5": {"samples": 10_000, "quick_samples": 2_560, "batch": 64},
    "resnet": {"samples": 2_560, "quick_samples": 640, "batch": 64},
}
TARGET_RATIO = 1.0  # goal: bpnn time / PyTorch time <= 1


# =============================================================================== helpers
def load_images(n, data_dir, seed=0):
    """The first ``n`` MNIST training images (N, 1, 28, 28) float32 in [0, 1] and labels, or
    synthetic ones (uniform noise, random labels) when the files are not there."""
    import numpy as np

    try:
        from bpnn.data import load_mnist

        X, y, _, _ = load_mnist(data_dir=data_dir, download=False, flatten=False)
        return X[:n], y[:n], "mnist"
    except Exception as exc:  # noqa: BLE001 - any failure means: no local MNIST
        rng = np.random.default_rng(seed)
        print(f"note: MNIST not available ({exc}); using synthetic images", file=sys.stderr)
        return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n), "synthetic"


# =============================================================================== models
def bpnn_model(config, seed):
    import bpnn
    from bpnn import nn

    if config == "lenet5":
        layers = [nn.Conv2D(6, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(16, 5), nn.ReLU(),
                  nn.MaxPool2D(2), nn.Flatten(), nn.Dense(120), nn.ReLU(), nn.Dense(84), nn.ReLU(), nn.Dense(10)]
    else:
        # Conv2D without bias; its keyword was `bias` before it was named `use_bias` as in
        # Dense, and a paired A/B against such a tree (benchmarks/ab.py) builds the same model
        no_bias = {"use_bias": False} if "use_bias" in inspect.signature(nn.Conv2D).parameters else {"bias": False}

        def block(c, stride):
            body = [nn.Conv2D(c, 3, stride=stride, padding=1, **no_bias), nn.BatchNorm(), nn.ReLU(),
                    nn.Conv2D(c, 3, padding=1, **no_bias), nn.BatchNorm()]
            short = None if stride == 1 else nn.Sequential([nn.Conv2D(c, 1, stride=stride, **no_bias),
                                                            nn.BatchNorm()])
            return nn.Residual(body, shortcut=short)

        layers = [nn.Conv2D(16, 3, padding=1, **no_bias), nn.BatchNorm(), nn.ReLU(),
                  block(16, 1), nn.ReLU(), block(32, 2), nn.ReLU(), nn.GlobalAvgPool2D(), nn.Dense(10)]
    return bpnn.Sequential(layers, input_shape=(1, 28, 28), seed=seed)


def torch_model(config, seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if config == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    class Residual(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
            self.shortcut = None if stride == 1 else nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                                                   nn.BatchNorm2d(c))

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         Residual(16, 16, 1), nn.ReLU(), Residual(16, 32, 2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


# =============================================================================== workers
class BpnnRunner:
    def __init__(self, config, X, y, batch, seed):
        import bpnn

        self.bpnn, self.config, self.X, self.y, self.batch, self.seed = bpnn, config, X, y, batch, seed

    def versions(self):
        import numpy as np

        from bpnn import _kernels

        return {"bpnn": self.bpnn.__version__, "numpy": np.__version__, "numba_kernels": _kernels.enabled(),
                "bpnn_path": os.path.dirname(self.bpnn.__file__), "kernels": kernel_info()}

    def _trainer(self, rep):
        model = bpnn_model(self.config, self.seed + rep)
        return self.bpnn.Trainer(model, optimizer=self.bpnn.optim.Adam(lr=1e-3))

    def epoch(self, rep):
        trainer = self._trainer(rep)
        t0 = time.perf_counter()
        hist = trainer.fit(self.X, self.y, epochs=1, batch_size=self.batch, verbose=False)
        return time.perf_counter() - t0, float(hist.history["loss"][-1])

    def split(self):
        """One epoch with timers around every top-level layer: ms per step (forward, backward)."""
        trainer = self._trainer(99)
        model = trainer.model
        times = [[0.0, 0.0] for _ in model.layers]
        for i, layer in enumerate(model.layers):
            fwd, bwd = layer.forward, layer.backward

            def f(x, training=False, _f=fwd, _i=i):
                t = time.perf_counter()
                out = _f(x, training)
                times[_i][0] += time.perf_counter() - t
                return out

            def b(g, input_grad=True, _b=bwd, _i=i):
                t = time.perf_counter()
                out = _b(g, input_grad)
                times[_i][1] += time.perf_counter() - t
                return out

            layer.forward, layer.backward = f, b
        t0 = time.perf_counter()
        trainer.fit(self.X, self.y, epochs=1, batch_size=self.batch, verbose=False)
        total = time.perf_counter() - t0
        steps = -(-len(self.X) // self.batch)
        names = [_layer_name(layer) for layer in model.layers]
        table = _split_table(names, times, total, steps)
        for row, layer in zip(table["rows"], model.layers):
            row["path"] = layer_paths(layer)
        return table


def _layer_name(layer):
    cfg = layer.get_config()
    parts = [str(cfg[k]) for k in ("out_channels", "units") if k in cfg]
    if "kernel_size" in cfg:
        parts.append("k" + "x".join(map(str, cfg["kernel_size"])))
    if cfg.get("stride") not in (None, [1, 1]) and "out_channels" in cfg:
        parts.append("s" + "x".join(map(str, cfg["stride"])))
    return f"{type(layer).__name__}({','.join(parts)})" if parts else type(layer).__name__


def _split_table(names, times, total, steps):
    rows = [{"layer": n, "forward_ms": 1e3 * f / steps, "backward_ms": 1e3 * b / steps} for n, (f, b) in zip(names, times)]
    inside = sum(f + b for f, b in times)
    return {"rows": rows, "step_ms": 1e3 * total / steps, "other_ms": 1e3 * (total - inside) / steps}


class TorchRunner:
    def __init__(self, config, X, y, batch, seed, threads):
        import torch

        torch.set_num_threads(threads)
        self.torch, self.config, self.batch, self.seed = torch, config, batch, seed
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)

    def versions(self):
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads(),
                "mkldnn": bool(self.torch.backends.mkldnn.is_available())}

    def _setup(self, rep):
        model = torch_model(self.config, self.seed + rep)
        return model, self.torch.optim.Adam(model.parameters(), lr=1e-3), self.torch.nn.CrossEntropyLoss()

    def _loop(self, model, opt, loss_fn, hooks=None):
        torch = self.torch
        n = len(self.X)
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, self.batch):
            idx = perm[i:i + self.batch]
            xb, yb = self.X[idx], self.y[idx]
            if hooks is not None:
                hooks.start()
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            if hooks is not None:
                hooks.backward_start()
            loss.backward()
            if hooks is not None:
                hooks.backward_end()
            opt.step()
            total += loss.item() * len(idx)
        return total / n

    def epoch(self, rep):
        model, opt, loss_fn = self._setup(rep)
        model.train()
        t0 = time.perf_counter()
        loss = self._loop(model, opt, loss_fn)
        return time.perf_counter() - t0, loss

    def split(self):
        model, opt, loss_fn = self._setup(99)
        hooks = _TorchHooks(self.torch, model)
        t0 = time.perf_counter()
        self._loop(model, opt, loss_fn, hooks)
        total = time.perf_counter() - t0
        steps = -(-len(self.X) // self.batch)
        names = [type(m).__name__ for m in model]
        return _split_table(names, hooks.times, total, steps)


class _TorchHooks:
    """Per-layer forward times from module hooks; backward times from hooks on each layer's
    output tensor (autograd on CPU runs the layers' backward one after another, in reverse,
    so layer i's backward lasts from its output's gradient to the previous layer's)."""

    def __init__(self, torch, model):
        self.model = list(model)
        self.times = [[0.0, 0.0] for _ in self.model]
        self._t = [0.0] * len(self.model)
        self.marks = []
        for i, m in enumerate(self.model):
            m.register_forward_pre_hook(lambda mod, inp, i=i: self._pre(i))
            m.register_forward_hook(lambda mod, inp, out, i=i: self._post(i, out))

    def start(self):
        self.marks = []

    def _pre(self, i):
        self._t[i] = time.perf_counter()

    def _post(self, i, out):
        self.times[i][0] += time.perf_counter() - self._t[i]
        if out.requires_grad:
            out.register_hook(lambda g, i=i: self.marks.append((i, time.perf_counter())))

    def backward_start(self):
        pass

    def backward_end(self):
        end = time.perf_counter()
        # marks arrive in reverse layer order: layer i's backward runs until the next mark
        for k, (i, t) in enumerate(self.marks):
            t_next = self.marks[k + 1][1] if k + 1 < len(self.marks) else end
            self.times[i][1] += t_next - t


def worker(spec):
    """A worker process: ``spec`` names the framework, config, images, threads, data
    folder and seed; it answers "epoch" (timed, with its memory and the machine's
    load) and "split" (the per-layer split), and says its peak RSS when told to quit."""
    X, y, source = load_images(spec["samples"], spec["data_dir"])
    batch = CONFIGS[spec["config"]]["batch"]
    if spec["framework"] == "bpnn":
        runner = BpnnRunner(spec["config"], X, y, batch, spec["seed"])
    else:
        runner = TorchRunner(spec["config"], X, y, batch, spec["seed"], spec["threads"])
    send({"ready": True, "versions": runner.versions(), "data": source})
    first = True
    for cmd in commands():
        if cmd["cmd"] == "split":
            send({"split": runner.split()})
            continue
        with Usage() as u:
            elapsed, loss = runner.epoch(cmd["rep"])
        send({"time": elapsed, "loss": loss, "first": first, "rss_before_kib": u.rss_before_kib,
              "hwm_kib": u.hwm_kib, "epoch_peak_increase_kib": u.peak_increase_kib,
              "foreign_cores": u.foreign_cores})
        first = False
    send({"bye": True, "peak_rss_kib": proc_status_kib("VmHWM")})


# =============================================================================== parent
def _worker(framework, config, samples, args):
    spec = {"framework": framework, "config": config, "samples": samples, "threads": args.threads,
            "data_dir": args.data_dir, "seed": args.seed}
    w = Worker(__file__, spec, name=framework, threads=args.threads)
    w.hello = w.recv()
    return w


def run_config(config, args):
    spec = CONFIGS[config]
    samples = args.samples or (spec["quick_samples"] if args.quick else spec["samples"])
    workers = {fw: _worker(fw, config, samples, args) for fw in args.frameworks}
    result = {"config": config, "samples": samples, "batch": spec["batch"],
              "versions": {fw: w.hello["versions"] for fw, w in workers.items()},
              "data": {fw: w.hello["data"] for fw, w in workers.items()}, "epochs": {fw: [] for fw in workers}}
    order = list(workers)
    for fw in order:  # warm-up epoch, in a fresh process: its memory is the first-epoch figure
        result["epochs"][fw].append({**workers[fw].ask("epoch", rep=0), "warmup": True})
    for rep in range(args.repeats):
        for fw in rotation(order, rep):
            k, attempts = least_disturbed(lambda fw=fw, rep=rep: workers[fw].ask("epoch", rep=rep + 1),
                                          threshold=args.noise_threshold, max_retries=args.max_retries,
                                          max_wait=0.0 if args.quick else args.max_wait)
            result["epochs"][fw].append(attempts[k])
    if not args.no_split:
        result["split"] = {fw: w.ask("split")["split"] for fw, w in workers.items()}
    result["peak_rss_kib"] = {fw: w.close()["peak_rss_kib"] for fw, w in workers.items()}
    timed = {fw: [e["time"] for e in eps if not e.get("warmup")] for fw, eps in result["epochs"].items()}
    result["median_s"] = {fw: statistics.median(t) for fw, t in timed.items()}
    result["min_s"] = {fw: min(t) for fw, t in timed.items()}
    result["noisy_epochs"] = {fw: sum(e["noisy"] for e in eps if not e.get("warmup"))
                              for fw, eps in result["epochs"].items()}
    result["epoch_working_set_kib"] = {
        fw: max(e["epoch_peak_increase_kib"] or 0 for e in eps if not e.get("warmup"))
        for fw, eps in result["epochs"].items()}
    if "bpnn" in timed and "torch" in timed:
        ratios = paired_ratios(timed["bpnn"], timed["torch"])
        result["ratio_of_medians"], result["ratio_paired_median"] = ratios["ratio_of_medians"], ratios["median_paired_ratio"]
    return result


def report(res):
    steps = -(-res["samples"] // res["batch"])
    print(f"\n=== {res['config']}: one epoch of {res['samples']} {res['data'].get('bpnn', res['data'])} images, "
          f"batch {res['batch']} ({steps} steps), Adam, float32")
    if "kernels" in res["versions"].get("bpnn", {}):
        print(f"  bpnn: {kernel_line(res['versions']['bpnn']['kernels'])}")
    for fw in res["median_s"]:
        t = [e["time"] for e in res["epochs"][fw] if not e.get("warmup")]
        print(f"  {fw:6s} median {res['median_s'][fw]:.3f} s  (min {min(t):.3f}, max {max(t):.3f}; "
              f"{1e3 * res['median_s'][fw] / steps:.2f} ms/step; noisy epochs {res['noisy_epochs'][fw]})")
    if "ratio_of_medians" in res:
        r = res["ratio_of_medians"]
        print(f"  bpnn / PyTorch = {r:.2f} (of medians), {res['ratio_paired_median']:.2f} (paired median); "
              f"goal <= {TARGET_RATIO:.1f}: {'met' if r <= TARGET_RATIO else 'NOT met'}")
    print("  memory (MiB):   peak RSS of the process   working set of an epoch")
    for fw in res["median_s"]:
        print(f"    {fw:6s}        {res['peak_rss_kib'][fw] / 1024:8.1f}              "
              f"{res['epoch_working_set_kib'][fw] / 1024:8.1f}")
    if "split" in res:
        print("  per-layer split, ms per step (forward / backward):")
        fws = list(res["split"])
        rows = [res["split"][fw]["rows"] for fw in fws]
        header = "    " + "#".ljust(3) + "".join(f"{fw + ' layer':28s}{'fwd':>7s}{'bwd':>7s}   " for fw in fws)
        print(header)
        for i in range(max(len(r) for r in rows)):
            line = f"    {i:<3d}"
            for r in rows:
                if i < len(r):
                    line += f"{r[i]['layer'][:27]:28s}{r[i]['forward_ms']:7.3f}{r[i]['backward_ms']:7.3f}   "
                else:
                    line += " " * 45
            print(line)
        line = "    " + "".join(f"{'step total / outside layers':28s}{s['step_ms']:7.2f}{s['other_ms']:7.2f}   "
                                for s in (res["split"][fw] for fw in fws))
        print(line)
        if "bpnn" in res["split"]:
            print("  bpnn kernel path per layer:")
            for i, r in enumerate(res["split"]["bpnn"]["rows"]):
                if r.get("path"):
                    print(f"    {i:<3d}{r['layer'][:27]:28s}{r['path']}")


# =============================================================================== kernels
def kernel_bench(repeats=20):
    """The compiled kernels against their NumPy fallbacks on LeNet-5's shapes, and (on
    AVX-512 CPUs) the register-tile products and the direct convolution against OpenBLAS
    on the residual CNN's first block (float32)."""
    import numpy as np

    from bpnn import _kernels
    from bpnn._geometry import Window
    from bpnn._kernels import windows as K

    if not _kernels.enabled():
        print("numba kernels are disabled (BPNN_DISABLE_NUMBA or numba missing); nothing to compare")
        return {}
    rng = np.random.default_rng(0)
    f32 = np.float32
    cases = []
    for name, (n, h, c, k, p) in {"conv1 (1x28x28, 5x5 pad 2)": (64, 28, 1, 5, 2),
                                  "conv2 (6x14x14, 5x5)": (64, 14, 6, 5, 0)}.items():
        ho = h + 2 * p - k + 1
        win = Window(k, k, 1, 1, p, p, 1, 1, h, h, ho, ho)
        x = rng.random((n, h, h, c), dtype=f32)
        cols = np.empty((n * ho * ho, k * k * c + 1), f32)
        dcols = rng.random((n * ho * ho, k * k * c), dtype=f32)
        dx = np.empty_like(x)
        cases.append((f"im2col  {name}", lambda x=x, cols=cols, win=win: K.im2col(x, cols, win)))
        # what Conv2D uses for up to 6 input channels (tiles of 7 and 5 outputs)
        tl = K.tiles_for(win, 7 if ho % 7 == 0 else 5)
        a = rng.random((n * ho * tl.nt, k * tl.span * c + 1), dtype=f32)
        da = np.ascontiguousarray(a[:, :-1])
        cases.append((f"im2col row tiles {name}", lambda x=x, a=a, tw=tl.window: K.im2col(x, a, tw)))
        cases.append((f"col2im row tiles {name}", lambda d=da, dx=np.empty_like(x), tw=tl.window: K.col2im(d, dx, tw)))
        cases.append((f"col2im  {name}", lambda d=dcols, dx=dx, win=win: K.col2im(d, dx, win)))
    for name, (n, h, c) in {"pool1 (6x28x28)": (64, 28, 6), "pool2 (16x10x10)": (64, 10, 16)}.items():
        win = Window(2, 2, 2, 2, 0, 0, 1, 1, h, h, h // 2, h // 2)
        x = rng.random((n, h, h, c), dtype=f32)
        out = np.empty((n, h // 2, h // 2, c), f32)
        arg = np.empty(out.shape, np.uint8)
        g = rng.random(out.shape, dtype=f32)
        dx = np.empty_like(x)
        cases.append((f"maxpool fwd {name}", lambda x=x, o=out, a=arg, w=win: K.max_pool(x, o, a, w)))
        cases.append((f"maxpool bwd {name}", lambda g=g, a=arg, dx=dx, w=win: K.max_pool_backward(g, a, dx, w)))
        cases.append((f"avgpool fwd {name}", lambda x=x, o=out, w=win: K.avg_pool(x, o, w)))

    # the residual CNN's first block (16 channels, 3x3, 28x28): the three products of one
    # block of X_col (1568 rows: two images) in the register-tile kernels against OpenBLAS,
    # and a whole Conv2D forward and backward (direct convolution against im2col + OpenBLAS)
    from bpnn import nn
    from bpnn._kernels import gemm

    if gemm.enabled():
        m, kc = 1568, 145
        a_, w_ = rng.random((m, kc), dtype=f32), rng.random((kc, 16), dtype=f32)
        g_, wt_ = rng.random((m, 16), dtype=f32), rng.random((16, 144), dtype=f32)
        y_, dw_, dc_ = np.empty((m, 16), f32), np.empty((kc, 16), f32), np.empty((m, 144), f32)
        cases.append(("tiles X_col W (1568x145 . 145x16)", lambda: gemm.matmul(a_, w_, y_)))
        cases.append(("tiles X_col^T G (145x1568 . 1568x16)", lambda: gemm.matmul(a_.T, g_, dw_)))
        cases.append(("tiles G W^T (1568x16 . 16x144)", lambda: gemm.matmul(g_, wt_, dc_)))
        conv = nn.Conv2D(16, 3, padding=1, use_bias=False)
        conv.build((16, 28, 28), 0, f32)
        xi = rng.random((64, 16, 28, 28), dtype=f32)
        gi = rng.random((64, 16, 28, 28), dtype=f32)

        def conv_step():
            conv.forward(xi, training=True)
            conv.backward(gi)

        cases.append(("Conv2D 16->16 3x3 28x28 fwd+bwd", conv_step))

    def best(fn):
        fn()
        out = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            out.append((time.perf_counter() - t) / repeats)
        return min(out)

    results = {}
    print(f"{'kernel':40s}{'numba ms':>10s}{'NumPy ms':>10s}{'speed-up':>10s}   (NumPy: fallbacks, OpenBLAS)")
    for name, fn in cases:
        _kernels.set_enabled(True)
        t_nb = best(fn)
        _kernels.set_enabled(False)
        t_np = best(fn)
        _kernels.set_enabled(True)
        results[name] = {"numba_ms": 1e3 * t_nb, "numpy_ms": 1e3 * t_np}
        print(f"{name:40s}{1e3 * t_nb:10.3f}{1e3 * t_np:10.3f}{t_np / t_nb:9.1f}x")
    return results


# =============================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="lenet5,resnet", help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--frameworks", default="bpnn,torch")
    ap.add_argument("--repeats", type=int, default=None, help="timed epochs per framework (default 5; quick 1)")
    ap.add_argument("--samples", type=int, default=None, help="training images (default per config)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1 repeat, fewer samples, no waiting for quiet")
    ap.add_argument("--no-split", action="store_true", help="skip the per-layer split epoch")
    ap.add_argument("--kernels", action="store_true", help="only compare the numba kernels with the NumPy fallbacks")
    ap.add_argument("--json", default=None, help="write all results to this file")
    ap.add_argument("--noise-threshold", type=float, default=0.3, help="foreign cores above which an epoch is re-run")
    ap.add_argument("--max-retries", type=int, default=2)
    ap.add_argument("--max-wait", type=float, default=30.0, help="seconds to wait for a quiet machine per epoch")
    ap.add_argument(WORKER_FLAG, dest="worker_spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_spec:
        worker(json.loads(args.worker_spec))
        return 0
    if args.kernels:
        write_json(args.json, {"machine": machine_info(), "kernels": kernel_bench()})
        return 0
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {unknown}; valid: {', '.join(CONFIGS)}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    machine = machine_info()
    print(f"machine: {machine.get('cpu_model', machine['processor'])}, {machine['vector_isa']}; "
          f"threads {args.threads}; cpu_count {os.cpu_count()}; data {args.data_dir}")
    results = []
    for config in configs:
        res = run_config(config, args)
        report(res)
        results.append(res)
    write_json(args.json, {"args": {k: v for k, v in vars(args).items() if k != "worker_spec"},
                           "machine": machine, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
