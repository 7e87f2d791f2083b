"""Kill training with SIGKILL at random moments, resume it, and compare with a run never
interrupted.

The run: an MLP with Dropout on scikit-learn's digits, Gaussian-noise augmentation drawn
from the trainer's generator, Adam with a warm-up schedule, ReduceLROnPlateau,
EarlyStopping(restore_best_weights=True), CSVLogger(append=True) and a ModelCheckpoint
written every epoch. A run starts from its folder's checkpoint when there is one, and
from scratch (its CSV log removed) when there is none, as a user's script would.

Each trial starts a run in a fresh folder, kills it (SIGKILL) at a random moment, checks
the checkpoint it left (readable, complete, of an epoch the CSV log reached), resumes
until the run completes, and compares the final weights, History and CSV log with the
uninterrupted run's, byte for byte, and looks for temporary files left behind. Half the
kills come at a uniform random time of the run; the other half wait until the checkpoint
write of a random epoch has begun (its temporary file appears) and kill then: inside the
write, unless it ended between two polls (a kill that leaves the temporary file behind
was inside it; those are counted).
``--kills K`` kills each trial's run K times (each resume may be killed again).

Runs are forked from this process after the imports (so a run starts in milliseconds);
every thread pool is pinned to one thread before NumPy loads, in this process and so in
every fork. Linux (fork, SIGKILL)::

    python benchmarks/kill_resume.py                      # 40 trials, 1 kill each
    python benchmarks/kill_resume.py --trials 4 --epochs 6 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import limit_threads, machine_info, set_thread_env, write_json  # noqa: E402

set_thread_env(1)  # before NumPy: BLAS, OpenMP and numba pools, here and in every fork

import numpy as np  # noqa: E402

import bpnn  # noqa: E402
from bpnn._atomic import remove_stale_temps  # noqa: E402
from bpnn.io.atomic import write_bytes_atomic, write_text_atomic  # noqa: E402
from bpnn.train import read_checkpoint  # noqa: E402

CKPT, LOG = "ckpt.safetensors", "log.csv"


def _augment(x, rng):
    return x + rng.normal(0.0, 0.05, size=x.shape).astype(x.dtype)


def _data():
    from bpnn.data import load_digits

    X, y = load_digits()
    return (np.asarray(X, np.float32) / 16.0), np.asarray(y)


def train(folder: str, data, epochs: int) -> None:
    """One run in ``folder``: resumed from its checkpoint when there is one; at the end
    the final weights and History are written (atomically) beside the log."""
    X, y = data
    model = bpnn.Sequential([bpnn.Dense(128, init="he_normal"), bpnn.ReLU(), bpnn.Dropout(0.2),
                             bpnn.Dense(128, init="he_normal"), bpnn.ReLU(), bpnn.Dropout(0.2),
                             bpnn.Dense(10)], seed=0)
    schedule = bpnn.optim.schedules.get({"class_name": "linear_warmup", "config": {
        "after": {"class_name": "constant", "config": {"lr": 3e-3, "unit": "step"}}, "warmup_iters": 30}})
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=schedule))
    ckpt, log = os.path.join(folder, CKPT), os.path.join(folder, LOG)
    callbacks = [bpnn.EarlyStopping("val_loss", patience=4, min_delta=1e-3, restore_best_weights=True),
                 bpnn.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=1e-2),
                 bpnn.CSVLogger(log, append=True),
                 bpnn.ModelCheckpoint(ckpt)]
    for name in ("final.npz", "history.json"):  # this script's own files, as ModelCheckpoint does for its
        remove_stale_temps(os.path.join(folder, name))
    resume = ckpt if os.path.exists(ckpt) else None
    if resume is None and os.path.exists(log):
        os.remove(log)  # no checkpoint: the run starts over, and so does its log
    history = trainer.fit(X, y, epochs=epochs, batch_size=32, validation_split=0.2, callbacks=callbacks,
                          augment=_augment, verbose=False, resume_from=resume)
    state = model.state_dict()
    import io

    buf = io.BytesIO()
    np.savez(buf, **state)
    write_bytes_atomic(os.path.join(folder, "final.npz"), buf.getvalue())
    write_text_atomic(os.path.join(folder, "history.json"), json.dumps(
        {"history": history.history, "epoch": history.epoch, "stopped_reason": history.stopped_reason}))


def _fork(folder, data, epochs) -> int:
    pid = os.fork()
    if pid == 0:  # the run
        code = 0
        try:
            train(folder, data, epochs)
        except BaseException as exc:  # noqa: BLE001 - reported by the exit status
            print(f"run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        os._exit(code)
    return pid


def _finish(folder, data, epochs) -> None:
    pid = _fork(folder, data, epochs)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"a run in {folder} failed (status {status})")


def _temps(folder) -> list:
    return sorted(n for n in os.listdir(folder) if n.startswith(".tmp-"))


def _kill(folder, data, epochs, mode, duration, n_writes, rng) -> dict:
    """Start a run, SIGKILL it (``mode`` "random": at a uniform time of ``duration``;
    "write": once the checkpoint write of a random one of ``n_writes`` epochs has
    begun); what the kill left."""
    stale = set(_temps(folder))  # left by an earlier kill; the run removes them as it starts
    start = time.perf_counter()
    pid = _fork(folder, data, epochs)
    killed, finished = False, False

    def ended() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done and os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"a run in {folder} failed (status {status})")
        return bool(done)

    if mode == "random":
        deadline = start + rng.uniform(0.0, duration)
        while time.perf_counter() < deadline:
            if ended():
                finished = True
                break
            time.sleep(0.0005)
    else:  # kill inside the checkpoint write of a random epoch
        target = rng.randrange(max(1, n_writes))
        prefix = f".tmp-{CKPT}-"  # the run is the folder's only writer
        seen = set()
        while True:
            if ended():
                finished = True
                break
            seen.update(n for n in os.listdir(folder) if n.startswith(prefix) and n not in stale)
            if len(seen) > target:
                break
            time.sleep(0.0002)  # a light poll: the run keeps a core
    if not finished:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        killed = True
    out = {"mode": mode, "killed": killed, "at_s": time.perf_counter() - start,
           "temps_left": sorted(set(_temps(folder)) - stale), "checkpoint": None, "corrupt": False}
    path = os.path.join(folder, CKPT)
    if os.path.exists(path):
        try:
            arrays, meta = read_checkpoint(path)
            out["checkpoint"] = meta["epoch"]
            logged = _logged_epochs(folder)
            if logged and max(logged) < meta["epoch"]:  # the log is written before the checkpoint
                out["corrupt"] = True
        except Exception as exc:  # noqa: BLE001 - counted
            out["corrupt"] = True
            out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _logged_epochs(folder) -> list:
    path = os.path.join(folder, LOG)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(line.split(",", 1)[0]) for line in f.read().splitlines()[1:] if line.split(",", 1)[0].isdigit()]


def _outcome(folder) -> dict:
    with open(os.path.join(folder, "history.json")) as f:
        history = f.read()
    with open(os.path.join(folder, LOG), "rb") as f:
        log = f.read()
    weights = dict(np.load(os.path.join(folder, "final.npz")))
    return {"history": history, "log": log, "weights": weights}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40, help="runs killed and resumed (default 40)")
    parser.add_argument("--kills", type=int, default=1, help="kills per trial (default 1)")
    parser.add_argument("--epochs", type=int, default=80, help="most epochs of a run (default 80)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--dir", default=None, help="folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    limiter = limit_threads(1)  # noqa: F841 - kept alive for the whole run
    rng = random.Random(args.seed)
    data = _data()
    root = args.dir or tempfile.mkdtemp(prefix="bpnn-kill-resume-")
    os.makedirs(root, exist_ok=True)
    try:
        # one short run here first, so that the forks inherit bpnn's compiled kernels
        # (otherwise each run spends its first second loading them from the disk cache)
        warm = os.path.join(root, "warm-up")
        os.makedirs(warm, exist_ok=True)
        train(warm, data, 1)
        shutil.rmtree(warm)
        ref_dir = os.path.join(root, "reference")
        shutil.rmtree(ref_dir, ignore_errors=True)
        os.makedirs(ref_dir)
        t0 = time.perf_counter()
        _finish(ref_dir, data, args.epochs)
        duration = time.perf_counter() - t0
        reference = _outcome(ref_dir)
        ref_history = json.loads(reference["history"])
        trials = []
        for trial in range(args.trials):
            folder = os.path.join(root, f"trial{trial:03d}")
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            kills = []
            while len(kills) < args.kills:
                mode = "random" if (trial + len(kills)) % 2 == 0 else "write"
                kill = _kill(folder, data, args.epochs, mode, duration, len(ref_history["epoch"]), rng)
                if kill["killed"]:
                    kills.append(kill)
                elif os.path.exists(os.path.join(folder, "final.npz")):
                    # the run ended before the kill: start the trial over
                    shutil.rmtree(folder)
                    os.makedirs(folder)
                    kills = []
            _finish(folder, data, args.epochs)
            got = _outcome(folder)
            same_weights = set(got["weights"]) == set(reference["weights"]) and all(
                np.array_equal(got["weights"][k], reference["weights"][k]) for k in reference["weights"])
            record = {"kills": kills, "weights_equal": bool(same_weights),
                      "history_equal": got["history"] == reference["history"],
                      "log_equal": got["log"] == reference["log"], "temps_at_end": _temps(folder)}
            trials.append(record)
            ok = record["weights_equal"] and record["history_equal"] and record["log_equal"]
            print(f"trial {trial:2d}: " + ", ".join(
                f"{k['mode']} kill at {k['at_s']:.3f} s (checkpoint of epoch {k['checkpoint']}"
                f"{', inside a write' if k['temps_left'] else ''})" for k in kills)
                + f" -> {'equal' if ok else 'DIFFERENT'}", flush=True)
        kills = [k for t in trials for k in t["kills"]]
        summary = {
            "trials": len(trials), "kills": len(kills),
            "kills_inside_a_write": sum(bool(k["temps_left"]) for k in kills),
            "kills_before_any_checkpoint": sum(k["checkpoint"] is None for k in kills),
            "corrupt_checkpoints": sum(k["corrupt"] for k in kills),
            "weights_equal": sum(t["weights_equal"] for t in trials),
            "history_equal": sum(t["history_equal"] for t in trials),
            "log_equal": sum(t["log_equal"] for t in trials),
            "temp_files_left": sum(len(t["temps_at_end"]) for t in trials),
            "reference_epochs": len(ref_history["epoch"]),
            "reference_stopped_reason": ref_history["stopped_reason"],
            "run_seconds": duration,
        }
        print(json.dumps(summary, indent=1))
        write_json(args.json, {"summary": summary, "trials": trials, "machine": machine_info(),
                               "args": vars(args)})
        return summary
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
