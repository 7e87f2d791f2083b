"""The pure helpers of the benchmark scripts (the scripts themselves are not tests)."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import kfac_autoencoder  # noqa: E402


def _curve(*losses):
    return [{"update": 10 * i, "wall_s": float(i), "loss": v} for i, v in enumerate(losses)]


def test_first_reaching_takes_the_first_point_at_or_below_the_target():
    curve = _curve(0.7, 0.5, 0.3, 0.2, 0.3)
    assert kfac_autoencoder.first_reaching(curve, 0.3)["update"] == 20
    assert kfac_autoencoder.first_reaching(curve, 0.25)["update"] == 30
    assert kfac_autoencoder.first_reaching(curve, 0.7)["update"] == 0


def test_first_reaching_never_reached_and_nan():
    assert kfac_autoencoder.first_reaching(_curve(0.7, 0.5), 0.4) is None
    assert kfac_autoencoder.first_reaching(_curve(math.nan, 0.35), 0.4)["update"] == 10
    assert kfac_autoencoder.first_reaching([], 0.4) is None


def test_headline_target_is_the_best_sgd_final_loss_and_ratios_use_the_fastest_setting():
    def row(name, lr, losses, wall_per_point):
        curve = [{"update": 10 * i, "wall_s": wall_per_point * i, "loss": v} for i, v in enumerate(losses)]
        return {"optimizer": name, "lr": lr, "damping": None, "final_loss": losses[-1], "curve": curve}

    results = [row("sgd", 1.0, [0.7, 0.5, 0.4], 1.0), row("sgd", 3.0, [0.7, 0.4, 0.3], 1.0),
               row("adam", 1e-3, [0.7, 0.3, 0.2], 1.5), row("kfac", 0.1, [0.7, 0.6, 0.5], 2.0),
               row("kfac", 0.3, [0.7, 0.3, 0.1], 2.0)]
    head = kfac_autoencoder.headline(results)
    assert head["target_loss"] == 0.3 and head["target_from"]["lr"] == 3.0
    assert head["best"]["sgd"]["updates"] == 20 and head["best"]["kfac"]["lr"] == 0.3
    assert head["sgd_over_kfac_updates"] == 2.0 and head["sgd_over_kfac_wall"] == 1.0
    assert head["adam_over_kfac_wall"] == 0.75


def test_lenet5_epochs_to_target_and_summary():
    import kfac_lenet5

    assert kfac_lenet5.epochs_to([97.0, 98.99, 99.0, 99.2], 99.0) == 3
    assert kfac_lenet5.epochs_to([97.0, 98.5], 99.0) is None
    rows = [{"optimizer": "sgd", "reached": True, "epochs": 2, "wall_s": 8.0},
            {"optimizer": "sgd", "reached": True, "epochs": 4, "wall_s": 12.0},
            {"optimizer": "sgd", "reached": False, "epochs": None, "wall_s": None}]
    s = kfac_lenet5.summarize(rows)["sgd"]
    assert (s["seeds"], s["reached"], s["epochs_mean"], s["wall_s_mean"]) == (3, 2, 3.0, 10.0)
    assert abs(s["epochs_std"] - 2 ** 0.5) < 1e-12


def test_the_kernel_path_of_each_layer_and_the_emulation_line(monkeypatch):
    """benchmarks/_harness: which computation each layer took, and a header that says when
    the instruction set is emulated."""
    import numpy as np
    import pytest

    import _harness
    import bpnn
    from bpnn import _kernels, nn
    from bpnn._kernels import gemm

    pytest.importorskip("numba")
    monkeypatch.setattr(_kernels, "_enabled", True)
    monkeypatch.setattr(gemm, "vector_bits", lambda: 256)
    model = bpnn.Sequential([nn.Conv2D(16, 3, padding=1), nn.ReLU(), nn.Conv2D(32, 3, padding=1), nn.Flatten(),
                             nn.Dense(3)], input_shape=(8, 5, 5), seed=0)
    model.forward(np.zeros((2, 8, 5, 5), np.float32), training=True)
    paths = [_harness.layer_paths(layer) for layer in model.layers]
    assert paths == ["Direct (256-bit tiles)", "", "Im2col (products on BLAS)", "", "BLAS"]
    assert _harness.layer_paths(model) == "Direct (256-bit tiles), Im2col (products on BLAS), BLAS"
    line = _harness.kernel_line({"blas": {"library": "openblas", "version": "0.3", "core_type": "Haswell",
                                          "threads": 1}, "kernel_path": gemm.path(),
                                 "emulation": {"NUMBA_CPU_NAME": "haswell"}})
    assert "core Haswell, 1 threads" in line and "tiles 256-bit (AVX2+FMA), products BLAS" in line
    assert line.endswith("EMULATED by NUMBA_CPU_NAME='haswell'")
    assert "EMULATED" not in _harness.kernel_line({"kernel_path": "BLAS (NumPy)"})
