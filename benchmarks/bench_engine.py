"""Speed and peak memory of cam_callback against the least work a Grad-CAM needs, on the CPU.

Model: torchvision resnet18 (weights=None, eval mode), random 224x224 images, batches of 16 and 32, target
= the class predicted by the same forward. Prints Markdown tables of medians and ratios.

    .venv/bin/python benchmarks/bench_engine.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_engine.py --quick    # smoke run: tiny batch and images, 2 repetitions

The floor is written out below (`floor_gradcam`): one forward with a hook on layer4 that hands on its
output as a fresh leaf and switches autograd on, so only avgpool + fc are recorded; the score is
``outputs.gather(argmax)``; ``torch.autograd.grad(score.sum(), act)``; Grad-CAM weighting; bilinear
upsampling to the input size and the same per-image min-max normalisation as ``compute_cam``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _common import (
    CLOCKS,
    add_timing_options,
    build_inputs,
    build_model,
    check_device,
    floor_gradcam,
    floor_two_layers,
    gradcam_map,
    on_device,
    paired_ratio,
    plain_forward,
    print_header,
    verdict,
)
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam

HERE = Path(__file__).resolve().parent
ENGINE_METHODS = ("gradcam", "gradcam++", "layercam")

TIME_TARGETS = {"compute_cam": 1.10, "engine_l3_l4": 1.25}
MEMORY_TARGET = ("compute_cam", 1.35)


# --------------------------------------------------------------------------------------------- variants


def naive_gradcam(model: nn.Module, x: Tensor) -> Tensor:
    """Grad-CAM at layer4 the naive way: the whole forward is recorded with autograd on."""
    captured: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: object, output: Tensor) -> None:
        captured["act"] = output

    handle = model.layer4.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            outputs = model(x)
            score = outputs.gather(1, outputs.argmax(dim=1, keepdim=True))
            (grad,) = torch.autograd.grad(score.sum(), captured["act"])
    finally:
        handle.remove()
    return gradcam_map(captured["act"].detach(), grad, tuple(x.shape[-2:]))


def make_variants(model: nn.Module, x: Tensor) -> dict[str, Callable[[], object]]:
    """The timed calls, by key. Engines are set up once, as a callback would."""
    engine_l3 = CAMEngine(model, ["layer3", "layer4"], list(ENGINE_METHODS))
    engine_l40 = CAMEngine(model, ["layer4.0", "layer4"], list(ENGINE_METHODS))
    return {
        "plain": lambda: plain_forward(model, x),
        "floor": lambda: floor_gradcam(model, x),
        "compute_cam": lambda: compute_cam(model, x, "layer4"),
        "floor_l3_l4": lambda: floor_two_layers(model, x),
        "engine_l3_l4": lambda: engine_l3(x),
        "engine_l40_l4": lambda: engine_l40(x),
        "naive": lambda: naive_gradcam(model, x),
    }


LABELS = {
    "plain": "plain forward, `torch.inference_mode()`",
    "floor": "floor: Grad-CAM at layer4, written out",
    "naive": "naive Grad-CAM (whole graph recorded)",
    "floor_l3_l4": "2-layer floor: grads at layer3 + layer4, raw Grad-CAM",
    "compute_cam": '`compute_cam(model, x, "layer4")`',
    "engine_l3_l4": "`CAMEngine` layer3 + layer4 x 3 methods",
    "engine_l40_l4": "`CAMEngine` layer4.0 + layer4 x 3 methods",
}
MEMORY_VARIANTS = ("plain", "compute_cam", "floor", "engine_l3_l4", "naive")


# ----------------------------------------------------------------------------------------------- timing


def check_agreement(model: nn.Module, x: Tensor) -> float:
    """compute_cam and the floor must give the same maps, or the comparison means nothing."""
    ours = compute_cam(model, x, "layer4")
    ref = floor_gradcam(model, x)
    diff = float((ours - ref).abs().max())
    if diff > 1e-4:
        raise SystemExit(f"compute_cam and the floor disagree (max abs diff {diff:.3g}); not timing")
    return diff


TIMED_VARIANTS = ("plain", "floor", "compute_cam", "floor_l3_l4", "engine_l3_l4", "engine_l40_l4")


def time_variants(
    variants: dict[str, Callable[[], object]], reps: int, warmup: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Seconds per call, interleaved: each round runs every variant once, in a rotated order."""
    keys = list(TIMED_VARIANTS)
    for _ in range(warmup):
        for key in keys:
            variants[key]()
    times: dict[str, list[float]] = {key: [] for key in keys}
    for rep in range(reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            gc.collect()
            start = clock()
            variants[key]()
            times[key].append(clock() - start)
    return times


# ----------------------------------------------------------------------------------------------- memory


def probe_memory(variant: str, batch: int, size: int, threads: int) -> int:
    """Peak RSS (KiB) added by one call of ``variant``, measured in a fresh Python process."""
    command = [sys.executable, str(HERE / "_memory_probe.py"), variant, str(batch), str(size), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory probe {variant} failed:\n{done.stderr}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["added_kib"])


def measure_memory(
    batches: list[int], size: int, threads: int, reps: int
) -> dict[tuple[str, int], list[int]]:
    results: dict[tuple[str, int], list[int]] = {}
    for batch in batches:
        for rep in range(reps):  # interleaved like the timings
            shift = rep % len(MEMORY_VARIANTS)
            order = MEMORY_VARIANTS[shift:] + MEMORY_VARIANTS[:shift]
            for variant in order:
                results.setdefault((variant, batch), []).append(probe_memory(variant, batch, size, threads))
    return results


# ------------------------------------------------------------------------------------------------ report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, 64x64, 2 repetitions")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 16 32)")
    add_timing_options(parser, 7, "steadier when other work shares the cores, but counts spinning threads")
    parser.add_argument("--mem-reps", type=int, default=None, help="fresh processes per memory cell (3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory part")
    args = parser.parse_args()

    quick = args.quick
    batches = args.batches or ([2] if quick else [16, 32])
    size = args.size or (64 if quick else 224)
    reps = args.reps or (2 if quick else 7)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    mem_reps = args.mem_reps or (1 if quick else 3)

    torch.set_num_threads(args.threads)
    device = check_device(args.device)
    model = build_model().to(device)
    print_header("bench_engine.py", args.threads)
    print(
        f"resnet18 (weights=None, eval) on {args.device}, {size}x{size} random images, "
        "target = predicted class, "
        f"{args.clock}-clock medians of {reps} interleaved runs after {warmup} warm-up round(s); "
        "the floor includes the bilinear upsampling and min-max normalisation, like `compute_cam`.\n"
    )

    rows: list[str] = []
    notes: list[str] = []
    for batch in batches:
        x = build_inputs(batch, size).to(device)
        diff = check_agreement(model, x)
        clock = on_device(CLOCKS[args.clock], args.device)
        times = time_variants(make_variants(model, x), reps, warmup, clock)
        med = {key: statistics.median(values) for key, values in times.items()}
        for key in times:
            ratio = med[key] / med["floor"]
            target, ok = verdict(ratio, TIME_TARGETS.get(key))
            rows.append(
                f"| {LABELS[key]} | {batch} | {med[key] * 1e3:.0f} | {ratio:.3f} | "
                f"{paired_ratio(times, key, 'floor'):.3f} | {med[key] / med['plain']:.3f} | {target} | {ok} |"
            )
        notes.append(
            f"batch {batch}: `CAMEngine` layer3 + layer4 vs the 2-layer floor: "
            f"{med['engine_l3_l4'] / med['floor_l3_l4']:.3f} "
            f"(paired {paired_ratio(times, 'engine_l3_l4', 'floor_l3_l4'):.3f}); "
            f"compute_cam vs floor max abs map difference {diff:.1g}."
        )

    print(f"Time per call ({args.clock} clock)")
    print()
    print("| variant | batch | median ms | x floor | x floor (paired) | x plain forward | target | met |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    print("\n".join(rows))
    print()
    print("`x floor (paired)`: median over rounds of the per-round ratio, steadier when the machine drifts.")
    for note in notes:
        print(f"- {note}")
    sys.stdout.flush()

    if args.no_memory or args.device != "cpu":  # the memory part measures host RSS of CPU runs
        print(f"\n1-minute load average at the end (this run included): {os.getloadavg()[0]:.2f}")
        return
    memory = measure_memory(batches, size, args.threads, mem_reps)
    print()
    print(
        f"Peak RSS added by one call, fresh process each (median of {mem_reps}; "
        "peak RSS (`VmHWM`) after the call minus RSS before it)"
    )
    print()
    print("| variant | batch | added MiB | runs MiB | x plain forward | target | met |")
    print("|---|---:|---:|---|---:|---|---|")
    for batch in batches:
        plain = statistics.median(memory[("plain", batch)])
        for variant in MEMORY_VARIANTS:
            values = memory[(variant, batch)]
            added = statistics.median(values)
            ratio = added / plain
            limit = MEMORY_TARGET[1] if variant == MEMORY_TARGET[0] else None
            target, ok = verdict(ratio, limit)
            runs = ", ".join(f"{v / 1024:.0f}" for v in values)
            cells = [LABELS[variant], str(batch), f"{added / 1024:.0f}", runs, f"{ratio:.2f}", target, ok]
            print("| " + " | ".join(cells) + " |")
    print(f"\n1-minute load average at the end (this run included): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
