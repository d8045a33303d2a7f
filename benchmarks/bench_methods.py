"""Cost of every CAM method relative to the Grad-CAM floor, on the CPU.

Model: torchvision resnet18 (weights=None, eval mode), random 224x224 images, batch 8, layer ``layer4``,
target = the predicted class. Each row is the median wall time of one engine call over a few repetitions
(after one warm-up call), divided by the median of the floor timed alternately with it.

The floor is ``floor_gradcam`` of bench_engine.py (imported, with its model and inputs): the least work a
Grad-CAM needs, one forward with a hook on layer4 that hands on its output as a fresh leaf and switches
autograd on there, so only avgpool + fc are recorded; ``torch.autograd.grad`` of the summed
predicted-class scores to layer4; ``ReLU(sum_k mean(dy/dA^k) A^k)``; upsampling and min-max
normalisation. Engine calls return raw maps (upsampling is lazy), so rows are timed without it.

    .venv/bin/python benchmarks/bench_methods.py            # full run (Score-CAM, Ablation-CAM: minutes)
    .venv/bin/python benchmarks/bench_methods.py --quick    # smoke run: batch 2, 64x64 images, 2 repetitions
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _common import build_inputs, build_model, check_device, floor_gradcam, machine_line
from torch import Tensor

from cam_callback import CAMEngine

# (row label, engine methods, engine options, cost in passes: K = channels of layer4, B = batch)
ROWS: list[tuple[str, str | list[str], dict[str, Any], str]] = [
    ("gradcam", "gradcam", {}, "1 fwd + 1 bwd (from layer4)"),
    ("gradcam++", "gradcam++", {}, "1 fwd + 1 bwd (from layer4)"),
    ("xgradcam", "xgradcam", {}, "1 fwd + 1 bwd (from layer4)"),
    ("hirescam", "hirescam", {}, "1 fwd + 1 bwd (from layer4)"),
    ("layercam", "layercam", {}, "1 fwd + 1 bwd (from layer4)"),
    ("eigencam", "eigencam", {}, "1 fwd"),
    ("gradcam + eigen_smooth", "gradcam", {"eigen_smooth": True}, "1 fwd + 1 bwd + a Gram eigh per image"),
    ("gradcam + aug_smooth", "gradcam", {"aug_smooth": True}, "6 x (1 fwd + 1 bwd)"),
    ("guided-backprop", "guided-backprop", {}, "1 fwd + 1 fwd + 1 bwd (full graph, to the input)"),
    ("guided-gradcam", "guided-gradcam", {}, "1 fwd + 1 bwd + 1 fwd + 1 bwd (full graph)"),
    ("scorecam", "scorecam", {}, "1 fwd + ceil(B*K/chunk) fwd of chunk images"),
    ("ablationcam", "ablationcam", {}, "1 fwd + B*ceil(K/chunk) fwd of 1 image, fanned out at layer4"),
    ("gradcam-elementwise", "gradcam-elementwise", {}, "1 fwd + 1 bwd (from layer4)"),
    ("eigengradcam", "eigengradcam", {}, "1 fwd + 1 bwd + a Gram eigh per image"),
    ("kpcacam", "kpcacam", {}, "1 fwd + an (hw)x(hw) kernel and its eigh per image"),
    ("shapleycam", "shapleycam", {}, "1 fwd + 1 bwd recording its graph + 1 double bwd (from layer4)"),
    ("finercam", "finercam", {}, "1 fwd + 2 bwd (from layer4)"),
    ("fullgrad", "fullgrad", {}, "1 fwd + 1 fwd + 1 bwd (full graph, to the input and every bias)"),
    ("gradcam, -elementwise, eigengradcam", ["gradcam", "gradcam-elementwise", "eigengradcam"], {},
     "1 fwd + 1 bwd shared by the three"),
]
SLOW = {"scorecam", "ablationcam"}


SYNC = False  # --device cuda: wait for the GPU before reading the clock


def seconds(fn: Callable[[], object]) -> float:
    if SYNC:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if SYNC:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_medians(
    fn: Callable[[], object], floor: Callable[[], object], reps: int, *, warm_up: bool = True
) -> tuple[float, float]:
    """Median times of ``fn`` and of the floor, run alternately so that both see the same machine load."""
    if warm_up:
        fn()
    row, base = [], []
    for _ in range(reps):
        base.append(seconds(floor))
        row.append(seconds(fn))
    return statistics.median(row), statistics.median(base)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="batch 2, 64x64 images, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per row (default 5; quick 2)")
    parser.add_argument("--slow-reps", type=int, default=1, help="repetitions for Score-CAM and Ablation-CAM")
    parser.add_argument("--chunk-size", type=int, default=64, help="copies per forward (perturbation rows)")
    parser.add_argument("--only", nargs="*", default=None, help="row labels to run (default: all)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8; quick 2)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 224; quick 64)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (cpu)")
    args = parser.parse_args()
    global SYNC
    device = check_device(args.device)
    SYNC = args.device == "cuda"
    batch, size = (2, 64) if args.quick else (8, 224)
    batch, size = args.batch or batch, args.size or size
    reps = args.reps or (2 if args.quick else 5)
    slow_reps = min(args.slow_reps, reps)

    model = build_model().to(device)
    x = build_inputs(batch, size).to(device)
    channels = model.layer4[-1].conv2.out_channels

    def floor() -> Tensor:
        return floor_gradcam(model, x)

    floor()  # warm-up
    threads = torch.get_num_threads()
    print(f"Machine: {machine_line(threads)}  ")
    print(f"resnet18 on {args.device}, layer4 (K = {channels}), batch {batch}, {size}x{size}  ")
    print(f"floor: bench_engine's floor_gradcam, timed alternately with each row ({reps} reps)")
    copies = batch * channels
    print(f"Score-CAM: {copies} masked images, "
          f"{math.ceil(copies / args.chunk_size)} forwards of up to {args.chunk_size}\n")
    print("| method | passes | median (ms) | floor (ms) | x floor |")
    print("|---|---|---:|---:|---:|")
    for label, method, options, cost in ROWS:
        if args.only is not None and label not in args.only:
            continue
        options = {**options, "chunk_size": args.chunk_size}
        engine = CAMEngine(model, "layer4", method, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow = isinstance(method, str) and method in SLOW  # thousands of forwards: no warm-up call needed
            run = lambda engine=engine: engine(x)  # noqa: E731
            row, base = paired_medians(run, floor, slow_reps if slow else reps, warm_up=not slow)
        print(f"| {label} | {cost} | {row * 1000:.1f} | {base * 1000:.1f} | {row / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
