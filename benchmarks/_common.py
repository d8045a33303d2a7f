"""What every benchmark here shares: the model and inputs, the written-out Grad-CAM floor, clocks, devices,
the timing options and the header that says on what machine and under what load the figures were taken."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def build_inputs(batch: int, size: int) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, size, size, generator=generator)


def _normalise(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    low = flat.amin(dim=1).view(-1, 1, 1)
    span = flat.amax(dim=1).view(-1, 1, 1) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


def gradcam_map(act: Tensor, grad: Tensor, size: tuple[int, int]) -> Tensor:
    alpha = grad.mean(dim=(2, 3))  # [B, K]
    cam = torch.relu((alpha[:, :, None, None] * act).sum(dim=1))  # ReLU(sum_k alpha_k A^k), [B, h, w]
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _normalise(cam)


def floor_gradcam(model: nn.Module, x: Tensor) -> Tensor:
    """Grad-CAM at layer4 with nothing extra: only avgpool + fc are recorded for backward."""
    return floor_gradcam_at(model, model.layer4, x)


def floor_gradcam_at(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    """The floor at any layer: one hooked forward, gradients to the layer, weights, upsampling."""
    captured: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: object, output: Tensor) -> Tensor:
        act = output.detach().requires_grad_(True)
        captured["act"] = act
        torch.set_grad_enabled(True)  # record from here on; the no_grad block below puts it back
        return act

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            outputs = model(x)
            score = outputs.gather(1, outputs.argmax(dim=1, keepdim=True))
            (grad,) = torch.autograd.grad(score.sum(), captured["act"])
    finally:
        handle.remove()
    return gradcam_map(captured["act"].detach(), grad, tuple(x.shape[-2:]))


def floor_two_layers(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Context for the engine rows: gradients at layer3 and layer4 from one backward, raw Grad-CAM maps.

    Recording starts at layer3, so this pays the backward through layer4 that any layer3 map needs.
    """
    captured: dict[str, Tensor] = {}

    def hook3(module: nn.Module, args: object, output: Tensor) -> Tensor:
        act = output.detach().requires_grad_(True)
        captured["layer3"] = act
        torch.set_grad_enabled(True)
        return act

    def hook4(module: nn.Module, args: object, output: Tensor) -> None:
        captured["layer4"] = output

    handles = [model.layer3.register_forward_hook(hook3), model.layer4.register_forward_hook(hook4)]
    try:
        with torch.no_grad():
            outputs = model(x)
            score = outputs.gather(1, outputs.argmax(dim=1, keepdim=True))
            grads = torch.autograd.grad(score.sum(), [captured["layer3"], captured["layer4"]])
    finally:
        for handle in handles:
            handle.remove()
    maps = {}
    for (name, act), grad in zip(captured.items(), grads, strict=True):
        maps[name] = torch.relu((grad.mean(dim=(2, 3))[:, :, None, None] * act.detach()).sum(dim=1))
    return maps


def plain_forward(model: nn.Module, x: Tensor) -> Tensor:
    with torch.inference_mode():
        return model(x)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def paired_ratio(times: dict[str, list[float]], key: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(times[key], times[base], strict=True))


def machine_line(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch.set_num_threads({threads}); torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Python {platform.python_version()}, {platform.system()}"
    )


def verdict(value: float, limit: float | None) -> tuple[str, str]:
    if limit is None:
        return "", ""
    return f"<= {limit:.2f}", "yes" if value <= limit else "**no**"


def on_device(clock: Callable[[], float], device: str) -> Callable[[], float]:
    """``clock``, read after the GPU finished its queued work when ``device`` is CUDA (asynchronous)."""
    if device != "cuda":
        return clock

    def read() -> float:
        torch.cuda.synchronize()
        return clock()

    return read


def check_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return torch.device(device)


def add_timing_options(parser: argparse.ArgumentParser, reps: int, clock_note: str) -> None:
    """The options every timing script here takes: --size, --reps, --warmup, --threads, --clock, --device."""
    parser.add_argument("--size", type=int, default=None, help="image side (default 224)")
    parser.add_argument("--reps", type=int, default=None, help=f"timed rounds (default {reps})")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (all cores)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help=f"wall: elapsed time (default); cpu: CPU time of this process, all threads ({clock_note})",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (cpu)")


def print_header(script: str, threads: int, extra: str = "") -> None:
    """Machine, the command as typed, and the load average: what a reader needs to trust the figures."""
    python = os.path.relpath(sys.executable)
    python = "python" if python.startswith("..") else python
    command = " ".join([python, f"benchmarks/{script}", *sys.argv[1:]])
    print(f"Machine: {machine_line(threads)}{extra}  ")
    print(f"Command: `{command}`  ")
    load = os.getloadavg()[0]
    print(f"1-minute load average at the start: {load:.2f} (other work on these cores skews timings)  ")
