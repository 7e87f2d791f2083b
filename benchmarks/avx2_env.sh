#!/bin/sh
# Run a command as on a CPU with AVX2 and FMA but no AVX-512 (e.g. AMD Zen 2/3), on an
# AVX-512 machine:  benchmarks/avx2_env.sh python benchmarks/bench_cnn.py --threads 1
#
# numba:   NUMBA_CPU_NAME=haswell with NUMBA_CPU_FEATURES empty (the CPU name alone keeps the
#          host's features, AVX-512 included); bpnn reads the width from numba's target.
# OpenBLAS (NumPy): OPENBLAS_CORETYPE=Haswell picks its Haswell kernels.
# PyTorch: ATEN_CPU_CAPABILITY=avx2 (ATen's kernels), ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's
#          convolutions), MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL's products).
# The benchmark headers print these variables as "EMULATED by ...". This is an emulation:
# the AVX-512 CPU's caches, clock and memory stay as they are.
export NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= OPENBLAS_CORETYPE=Haswell
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
exec "$@"
