"""The measured set (`measure_samples`): time per validation on one process and on two DDP processes, the
numbers of both, and peak memory for 64 and 512 measured samples (CPU).

Model: the small CNN of bench_callback.py (three 3x3 convolutions, 10 classes) in a LightningModule, 512
random 32x32 images with random labels and a square object mask each; layer ``net.features.6``, gradcam,
``num_samples=16``, ``chunk_size=64``. Each configuration runs in fresh processes (one thread each):
``trainer.validate`` is called ``--reps`` times after one warm-up (the callback keeps one run across them,
as in a fit, so only the first is a first-maps check), and the callback's hook ``on_validation_epoch_end``
is timed inside it (the shown batch on rank 0, this rank's share of the measured set, the agreement and
the gathering). Under DDP (``strategy="ddp"``, two CPU processes, gloo) the slowest
rank's median is compared with the single process's. Memory: a fresh process per size, the peak RSS
(``VmHWM``, reset before the call where the kernel allows) added by one validation's hook after a warm-up.

    .venv/bin/python benchmarks/bench_measure.py            # 512 measured samples, 5 validations
    .venv/bin/python benchmarks/bench_measure.py --quick    # 128 samples, 2 validations
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
TIME_TARGET = 0.7  # the slowest of two DDP processes, x one process
NUMBERS_TARGET = 1e-3  # largest difference between the numbers of the two
MEMORY_TARGET_MIB = 64  # peak with 512 measured samples minus peak with 64


def _data(count: int) -> DataLoader:
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(count, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    masks = torch.zeros(count, 32, 32)
    corners = torch.randint(0, 16, (count, 2), generator=generator)
    for i, (y, x) in enumerate(corners.tolist()):
        masks[i, y : y + 16, x : x + 16] = 1
    return DataLoader(TensorDataset(images, labels, masks), batch_size=64)


def worker(kind: str, samples: int, reps: int, out: str) -> None:
    """One configuration in this process (and, for ``ddp``, the one Lightning starts beside it)."""
    import logging

    import pytorch_lightning as pl
    from _memory_probe import current_rss_kib, peak_rss_kib, reset_peak
    from bench_callback import SMALL_LAYER, Classifier, SmallNet

    from cam_callback import GradCAMCallback

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    times: list[tuple[float, float]] = []
    memory: list[int] = []

    class Timed(GradCAMCallback):
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if not times:  # one run across the validations, as in a fit: after the first, no first-maps check
                super().setup(trainer, pl_module, stage)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            torch.set_num_threads(1)
            before = current_rss_kib()
            reset_peak()
            wall, cpu = time.perf_counter(), time.process_time()
            super().on_validation_epoch_end(trainer, pl_module)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
            memory.append(peak_rss_kib()[0] - before)

    measured = samples if kind != "memory64" else 64
    callback = Timed(
        layer=SMALL_LAYER, num_samples=16, measure_samples=measured, chunk_size=64, target="label",
        strict=True, log_heatmaps=False,
    )
    class Masked(Classifier):
        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            return super().validation_step(batch[:2], batch_idx)  # images, labels (the masks are ours)

    module = Masked(SmallNet()).eval()
    loader = _data(samples)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2 if kind == "ddp" else 1, strategy="ddp" if kind == "ddp" else "auto",
        callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=out,
    )
    numbers: dict[str, float] = {}
    for _ in range(reps + 1):
        trainer.validate(module, loader, verbose=False)
        numbers = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("cam_drift/")}
    rank = trainer.global_rank
    result = {"times": times[1:], "memory_kib": memory[1:], "numbers": numbers}
    Path(out, f"{kind}_{rank}.json").write_text(json.dumps(result))


def _spawn(kind: str, samples: int, reps: int, out: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(HERE / "bench_measure.py"), "--worker", kind, "--samples", str(samples),
               "--reps", str(reps), "--out", out]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 samples, 2 validations")
    parser.add_argument("--samples", type=int, default=None, help="measured samples (512)")
    parser.add_argument("--reps", type=int, default=None, help="timed validations per configuration (5)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    samples = args.samples or (128 if args.quick else 512)
    reps = args.reps or (2 if args.quick else 5)
    if args.worker:
        worker(args.worker, samples, reps, args.out)
        return
    sys.path.insert(0, str(HERE))
    from _common import print_header, verdict

    print_header("bench_measure.py", 1, ", one thread per process")
    print(
        f"Small CNN on {samples} random 32x32 images with square masks, layer `net.features.6`, gradcam, "
        f"num_samples=16, measure_samples={samples}, chunk_size=64; medians of {reps} validations after one "
        "warm-up, the hook `on_validation_epoch_end` timed inside `trainer.validate`.\n"
    )
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="bench_measure_") as out:
        for kind in ("single", "ddp", "memory64", "memory"):
            _spawn(kind, samples, reps, out)
        read = {path.stem: json.loads(path.read_text()) for path in Path(out).glob("*.json")}

    def med(key: str, clock: int) -> float:
        return _median([t[clock] for t in read[key]["times"]])

    print("| configuration | wall ms (median) | CPU ms (median) | x one process (wall) | x one process (CPU) "
          "| target | met |")
    print("|---|---:|---:|---:|---:|---|---|")
    single = (med("single_0", 0), med("single_0", 1))
    rows = [("one process", "single_0"), ("DDP rank 0 (shows, writes)", "ddp_0"), ("DDP rank 1", "ddp_1")]
    for label, key in rows:
        wall, cpu = med(key, 0), med(key, 1)
        ratios = f"{wall / single[0]:.3f} | {cpu / single[1]:.3f}"
        print(f"| {label} | {wall * 1e3:.0f} | {cpu * 1e3:.0f} | {ratios} |  |  |")
    slowest = max(med("ddp_0", 0), med("ddp_1", 0)), max(med("ddp_0", 1), med("ddp_1", 1))
    target, wall_ok = verdict(slowest[0] / single[0], TIME_TARGET)
    cpu_ok = verdict(slowest[1] / single[1], TIME_TARGET)[1]
    print(f"| **slowest DDP rank** | {slowest[0] * 1e3:.0f} | {slowest[1] * 1e3:.0f} | "
          f"{slowest[0] / single[0]:.3f} | {slowest[1] / single[1]:.3f} | {target} | wall {wall_ok}, "
          f"CPU {cpu_ok} |")
    print()
    one = read["single_0"]["numbers"]
    gaps = [abs(read[f"ddp_{rank}"]["numbers"].get(name, float("inf")) - value)
            for rank in (0, 1) for name, value in one.items()]
    ok = verdict(max(gaps), NUMBERS_TARGET)[1]
    target = f"<= {NUMBERS_TARGET:g}"
    listed = ", ".join(f"`{name.rsplit('/', 1)[-1]}` {value:.4f}" for name, value in sorted(one.items()))
    print(f"- numbers ({listed}): largest difference between one process and either DDP rank "
          f"{max(gaps):.2g}, target {target}: {ok}.")
    low = _median(read["memory64_0"]["memory_kib"]) / 1024
    high = _median(read["memory_0"]["memory_kib"]) / 1024
    target, ok = verdict(high - low, MEMORY_TARGET_MIB)
    print(f"- peak RSS added by one validation's hook: {low:.1f} MiB with 64 measured samples, "
          f"{high:.1f} MiB with {samples}: {high - low:.1f} MiB more, target {target} MiB: {ok}.")
    print(f"\n1-minute load average at the end (this run included): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
