"""What one validation costs with `GradCAMCallback`, against the Grad-CAM floor of bench_engine.py (CPU).

Model: torchvision resnet18 (weights=None, eval mode) inside a small LightningModule, 16 random 224x224
images with random labels, layer ``net.layer4`` (resnet18's ``layer4``), method ``gradcam``, target = the
predicted class (the floor's target). Prints a Markdown table of medians and ratios.

    .venv/bin/python benchmarks/bench_callback.py            # full run (about 6 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_callback.py --quick    # smoke run: 2 images of 64x64, 2 repetitions
    .venv/bin/python benchmarks/bench_callback.py --device cuda   # the same tables on a GPU

Each callback is set up by a real ``pytorch_lightning.Trainer`` with a ``TensorBoardLogger`` in a temporary
folder: one ``trainer.validate`` takes the fixed batch, builds the engine and opens the logger. The timed call
is then the callback's hook ``on_validation_epoch_end(trainer, module)`` itself, under
``torch.inference_mode()`` as in Lightning's validation loop: the maps, the drift numbers (handed to
``LightningModule.log``, replaced by a counter outside Lightning's loop), one copy of the maps to the host
handed to the background writer. Outside the clock the writer is drained (its time is a row of its own:
captions and grids, encoding, event framing, file writes), so its work never overlaps the next timed call.
A second table does the same for a small CNN on 256 images of 32x32. The floor is ``floor_gradcam`` of
bench_engine.py (imported), which includes the upsampling and min-max normalisation the callback's maps
also get.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from _common import (
    CLOCKS,
    add_timing_options,
    build_inputs,
    build_model,
    check_device,
    floor_gradcam,
    floor_gradcam_at,
    floor_two_layers,
    on_device,
    paired_ratio,
    plain_forward,
    print_header,
    verdict,
)
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as python_masked_crc32c
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import image as image_summary

from cam_callback import CAMEngine, GradCAMCallback
from cam_callback.callback.history import MAX_FRAMES, MapHistory
from cam_callback.callback.publishing import Display, summary_records
from cam_callback.core.drift import shrink_maps
from cam_callback.core.focus import focus_numbers
from cam_callback.render import heatmap_grid, overlay_grid
from cam_callback.sinks import TensorBoardSink
from cam_callback.sinks.encoding import encode_jpeg
from cam_callback.sinks.events import masked_crc32c

LAYER = "net.layer4"
METHOD = "gradcam"
MULTI_LAYERS = ["net.layer3", "net.layer4"]
MULTI_METHODS = ["gradcam", "gradcam++", "layercam"]
CALLBACK_TARGET = 1.10  # per-validation cost of the callback on the training thread, x floor
PAIR_TARGET = 0.10  # each further (layer, method) pair, x floor
SMALL_TARGET = 1.10  # the small CNN's hook at 256 x 32 px, x its floor (the host work is the writer's)
SMALL_LAYER = "net.features.6"
NUM_CLASSES = 1000  # torchvision's default head, as in bench_engine.build_model


# ------------------------------------------------------------------------------------------ model, data


class Classifier(pl.LightningModule):
    """resnet18 as ``self.net``; the validation step computes and logs a cross-entropy."""

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = build_model() if net is None else net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("val/loss", loss, batch_size=len(y))
        return loss


def small_cnn() -> nn.Module:
    """A small CNN for 32x32 inputs (CIFAR-like): three 3x3 convolutions, 10 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(  # features; its index 6 is the last convolution's ReLU, where the maps are taken
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        ),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)),
    ).eval()


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        body = small_cnn()
        self.features, self.head = body[0], body[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def natural_inputs(images: int, size: int) -> Tensor:
    """Random images with a 1/f amplitude spectrum, like photographs: unlike white noise, PNG compresses
    them, which costs the encoder more time."""
    generator = torch.Generator().manual_seed(3)
    spectrum = torch.fft.rfft2(torch.randn(images, 3, size, size, generator=generator))
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    x = torch.fft.irfft2(spectrum / (fy**2 + fx**2).sqrt().clamp_min(1.0 / size), s=(size, size))
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)


def build_loader(
    images: int, size: int, natural: bool = False, classes: int = NUM_CLASSES
) -> tuple[Tensor, DataLoader]:
    x = natural_inputs(images, size) if natural else build_inputs(images, size)
    labels = torch.randint(0, classes, (images,), generator=torch.Generator().manual_seed(2))
    return x, DataLoader(TensorDataset(x, labels), batch_size=images, shuffle=False, num_workers=0)


ACCELERATOR = {"cpu": "cpu", "cuda": "gpu"}
DEVICE = "cpu"  # set by --device
IMAGES = 16  # set by --images


def make_trainer(callbacks: list[pl.Callback], root: Path, name: str) -> pl.Trainer:
    return pl.Trainer(
        accelerator=ACCELERATOR[DEVICE],
        devices=1,
        logger=TensorBoardLogger(save_dir=str(root), name=name, version=0),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_epochs=1,
    )


def make_callback(**options: Any) -> GradCAMCallback:
    settings: dict[str, Any] = {
        "layer": LAYER, "method": METHOD, "target": "predicted", "strict": True, "num_samples": IMAGES,
    }
    settings.update(options)
    return GradCAMCallback(**settings)


# ----------------------------------------------------------------------------------------------- checks


def event_files(directory: str) -> list[Path]:
    return sorted(Path(directory).glob("events.out.tfevents.*"))


def event_bytes(directory: str) -> int:
    return sum(path.stat().st_size for path in event_files(directory))


def count_events(directory: str) -> tuple[dict[str, int], dict[str, int]]:
    """Image and scalar summaries per tag in every event file of ``directory``."""
    images: dict[str, int] = {}
    scalars: dict[str, int] = {}
    for path in event_files(directory):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "image":
                    images[value.tag] = images.get(value.tag, 0) + 1
                elif kind == "simple_value":
                    scalars[value.tag] = scalars.get(value.tag, 0) + 1
    return images, scalars


@dataclass
class Setup:
    """A callback with its trainer, after the one-off ``trainer.validate`` that sets it up."""

    callback: GradCAMCallback
    trainer: pl.Trainer
    calls: int = 0  # on_validation_epoch_end calls that did the work, the set-up validation included
    growth: list[int] | None = None  # event-file bytes added by each timed call
    drains: list[float] | None = None  # seconds the writer needed after each timed hook returned
    logged: dict[str, int] = field(default_factory=dict)  # LightningModule.log calls by name, direct calls

    @property
    def log_dir(self) -> str:
        return str(self.trainer.logger.log_dir)

    def hook(self, module: pl.LightningModule) -> None:
        def count(name: str, *args: Any, **kwargs: Any) -> None:
            self.logged[name] = self.logged.get(name, 0) + 1

        # Lightning's validation loop calls the hook in inference mode; its `log` needs that loop.
        with torch.inference_mode(), mock.patch.object(module, "log", count):
            self.callback.on_validation_epoch_end(self.trainer, module)

    def after(self, before: int) -> None:
        """Outside the clock: drain the writer (timed apart), then the call must have written its images."""
        self.calls += 1
        # No public drain: the run's writer is read where the callback keeps it (closing it instead, with
        # `teardown`, would start a new writer thread inside the next timed call).
        writer = self.callback._run.output._writer
        start = time.perf_counter()
        if writer is not None:
            writer.drain()
        self.drains = (self.drains or []) + [time.perf_counter() - start]
        added = event_bytes(self.log_dir) - before
        if added <= 0:
            raise SystemExit(f"a timed callback call wrote nothing to {self.log_dir}; not a valid timing")
        self.growth = (self.growth or []) + [added]


def set_up(
    callback: GradCAMCallback, module: pl.LightningModule, loader: DataLoader, root: Path, name: str
) -> Setup:
    trainer = make_trainer([callback], root, name)
    trainer.validate(module, loader, verbose=False)
    setup = Setup(callback, trainer, calls=1)
    if len(callback.history) != 1:
        raise SystemExit(f"the callback {name!r} recorded no maps during trainer.validate")
    return setup


def check_maps(setup: Setup, floor_maps: Tensor, history_size: int) -> float:
    """The callback must explain the same batch as the floor, with the same maps (at the history's size)."""
    frames = setup.callback.history.frames()[(LAYER, METHOD)]
    diff = float((frames[-1] - shrink_maps(floor_maps, history_size)).abs().max())
    if diff > 1e-4:
        raise SystemExit(f"the callback's maps and the floor's differ (max abs diff {diff:.3g}); not timing")
    return diff


def check_written(setup: Setup, tags: list[str], scalar_tags: list[str]) -> None:
    """Every call wrote every image; every call after the first wrote the drift scalars."""
    images, scalars = count_events(setup.log_dir)
    for tag in tags:
        if images.get(tag, 0) != setup.calls:
            found = images.get(tag, 0)
            raise SystemExit(f"{setup.log_dir}: {found} images under {tag!r}, expected {setup.calls}")
    for tag in scalar_tags:  # every call after the first logs the drift numbers: counted (direct) or written
        found = setup.logged.get(tag, 0) + scalars.get(tag, 0)  # (by Lightning, in trainer.validate)
        if found != setup.calls - 1:
            expected = setup.calls - 1
            raise SystemExit(f"{setup.log_dir}: {found} numbers logged as {tag!r}, expected {expected}")


# ----------------------------------------------------------------------------------------------- timing


@dataclass
class Variant:
    """A timed call; ``before``/``after`` run outside the clock (checks); a returned float is a side time."""

    call: Callable[[], Any]
    before: Callable[[], Any] | None = None
    after: Callable[[Any], None] | None = None
    side: str | None = None  # key that receives the float ``call`` returns


def time_variants(
    variants: dict[str, Variant], reps: int, warmup: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Seconds per call, interleaved: each round runs every variant once, in a rotated order."""
    keys = list(variants)
    times: dict[str, list[float]] = {key: [] for key in keys}
    times.update({v.side: [] for v in variants.values() if v.side})
    for rep in range(-warmup, reps):
        shift = rep % len(keys)
        for key in keys[shift:] + keys[:shift]:
            variant = variants[key]
            state = variant.before() if variant.before else None
            gc.collect()
            start = clock()
            returned = variant.call()
            elapsed = clock() - start
            if variant.after:
                variant.after(state)
            if rep >= 0:
                times[key].append(elapsed)
                if variant.side:
                    times[variant.side].append(returned)
    return times


def difference(times: dict[str, list[float]], key: str, minus: str) -> list[float]:
    """Per-round difference: the same round's ``key`` minus ``minus``."""
    return [a - b for a, b in zip(times[key], times[minus], strict=True)]


# ------------------------------------------------------------------------------------------------ report

LABELS = {
    "plain": "plain forward, `torch.inference_mode()`",
    "floor": "floor: Grad-CAM at layer4, written out (bench_engine)",
    "engine": "`CAMEngine` layer4 gradcam + normalised maps (the callback's maps)",
    "render": "`overlay_grid` with captions + `heatmap_grid` (rendering alone)",
    "sink": "`TensorBoardSink`: overlay (JPEG) + heatmaps (PNG) + flush (the writer's job)",
    "crc_python": "CRC-32C of the 2 encoded images, TensorBoard's pure Python (what its writer runs)",
    "crc_native": "CRC-32C of the same bytes, `google-crc32c` (what the callback's event file uses)",
    "callback": "**callback** `on_validation_epoch_end` (training thread): maps, drift, hand-over",
    "callback_drain": "its writer after the hook returned (background: draw, encode, frame, write), per call",
    "split": "callback minus `CAMEngine` (drift + hand-over), per round",
    "noheat": "callback, `log_heatmaps=False`",
    "png": "callback, `image_format=\"png\"` (lossless overlays)",
    "natural": "callback on natural-like images (1/f spectrum) instead of white noise",
    "methods3": "callback, layer4 x gradcam, gradcam++, layercam (3 pairs)",
    "insitu": "callback hook timed inside `trainer.validate`",
    "validate_diff": "`trainer.validate` with the callback minus without (drained at teardown), per round",
    "validate_without": "`trainer.validate` without the callback ({images}-image validation, context)",
    "floor_l3_l4": "2-layer floor: grads at layer3 + layer4, raw Grad-CAM (bench_engine)",
    "multi": "callback, layer3 + layer4 x gradcam, gradcam++, layercam (6 pairs)",
    "focus": "focus numbers of one pair (`focus_numbers` on the maps at `history_size`)",
    "timeline_copy": f"live timeline of one pair: the hook's copy of its {MAX_FRAMES} kept frames",
    "timeline": f"live timeline of one pair, {MAX_FRAMES} frames, drawn (by the background writer)",
    "focus_timeline": "focus numbers + timeline copy of one pair (what they add to the hook)",
}
ROW_ORDER = [
    "plain", "floor", "engine", "render", "sink", "crc_python", "crc_native", "callback", "callback_drain",
    "split", "noheat", "png", "natural", "methods3", "insitu", "validate_diff", "validate_without",
    "floor_l3_l4", "multi", "focus", "timeline_copy", "timeline", "focus_timeline",
]  # fmt: skip
FOCUS_TARGET = 0.05  # focus numbers + live timeline, x floor
TARGETS = {"callback": CALLBACK_TARGET, "natural": CALLBACK_TARGET, "focus_timeline": FOCUS_TARGET}
SMALL_LABELS = {
    "small_plain": "plain forward, `torch.inference_mode()`",
    "small_floor": f"floor: Grad-CAM at `{SMALL_LAYER}`, written out",
    "small_callback": "**callback** `on_validation_epoch_end` (training thread)",
    "small_callback_drain": "its writer after the hook returned (background), per call",
}


def print_table(times: dict[str, list[float]], keys: list[str], labels: dict[str, str], base: str,
                plain: str, targets: dict[str, float], images: int) -> dict[str, float]:
    med = {key: statistics.median(values) for key, values in times.items() if values}
    print("| variant | median ms | x floor | x floor (paired) | x plain forward | target | met |")
    print("|---|---:|---:|---:|---:|---|---|")
    for key in keys:
        if key not in med:
            continue
        ratio = med[key] / med[base]
        target, ok = verdict(ratio, targets.get(key))
        paired = f"{paired_ratio(times, key, base):.3f}" if len(times[key]) == len(times[base]) else ""
        print(
            f"| {labels[key].format(images=images)} | {med[key] * 1e3:.0f} | {ratio:.3f} | "
            f"{paired} | {med[key] / med[plain]:.3f} | {target} | {ok} |"
        )
    print()
    return med


def main() -> None:
    global DEVICE, IMAGES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 images of 64x64, 2 repetitions")
    parser.add_argument("--images", type=int, default=None, help="images explained (default 16)")
    add_timing_options(parser, 9, "the writer's thread included")
    parser.add_argument("--no-validate", action="store_true", help="skip the `trainer.validate` rows")
    parser.add_argument("--no-multi", action="store_true", help="skip the 2 layers x 3 methods rows")
    parser.add_argument("--no-small", action="store_true", help="skip the small CNN at 256 x 32 px")
    parser.add_argument("--small-images", type=int, default=256, help="images for the small CNN (256)")
    parser.add_argument("--small-size", type=int, default=32, help="image side for the small CNN (32)")
    args = parser.parse_args()

    quick = args.quick
    images = IMAGES = args.images or (2 if quick else 16)
    size = args.size or (64 if quick else 224)
    reps = args.reps or (2 if quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    DEVICE = args.device
    device = check_device(DEVICE)
    clock = on_device(CLOCKS[args.clock], DEVICE)

    warnings.filterwarnings("ignore", module=r"(pytorch_)?lightning.*")
    warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers).*")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)

    torch.set_num_threads(args.threads)
    gpu = f", {torch.cuda.get_device_name()}" if DEVICE == "cuda" else ""
    print_header("bench_callback.py", args.threads, f", pytorch_lightning {pl.__version__}{gpu}")
    print(
        f"resnet18 (weights=None, eval) in a LightningModule on {DEVICE}, {images} random {size}x{size} "
        f"images, layer4, gradcam, target = predicted class; {args.clock}-clock medians of {reps} "
        f"interleaved rounds after {warmup} warm-up round(s). Callback: the hook `on_validation_epoch_end` "
        "called directly on a Trainer that ran `trainer.validate` once (fixed batch taken, engine built, "
        "logger open), TensorBoardLogger writing to a temporary folder; the background writer drained "
        "outside the clock after each call.\n"
    )
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="bench_callback_") as tmp:
        root = Path(tmp)
        module = Classifier().eval()
        x, loader = build_loader(images, size)
        history_size = 32

        # One-off set-up, untimed: each callback takes its fixed batch and opens its logger here.
        full = set_up(make_callback(), module, loader, root, "callback")
        noheat_cb = make_callback(log_heatmaps=False, tag_prefix="noheat")
        noheat = set_up(noheat_cb, module, loader, root, "noheat")
        png_cb = make_callback(image_format="png", tag_prefix="png")
        setups = {"callback": full, "noheat": noheat, "png": set_up(png_cb, module, loader, root, "png")}
        methods3_cb = make_callback(method=MULTI_METHODS, tag_prefix="methods3")
        setups["methods3"] = set_up(methods3_cb, module, loader, root, "methods3")
        if not args.no_multi:
            multi_cb = make_callback(layer=MULTI_LAYERS, method=MULTI_METHODS, tag_prefix="multi")
            setups["multi"] = set_up(multi_cb, module, loader, root, "multi")
        _, natural_loader = build_loader(images, size, natural=True)
        natural_cb = make_callback(tag_prefix="natural")
        setups["natural"] = set_up(natural_cb, module, natural_loader, root, "natural")
        small: Setup | None = None
        if not args.no_small:
            small_module = Classifier(SmallNet()).eval()
            small_x, small_loader = build_loader(args.small_images, args.small_size, classes=10)
            small_cb = make_callback(layer=SMALL_LAYER, tag_prefix="small", num_samples=args.small_images)
            small = setups["small"] = set_up(small_cb, small_module, small_loader, root, "small")
        torch.set_num_threads(args.threads)  # in case the Trainer changed it
        if module.training or torch.get_num_threads() != args.threads:
            raise SystemExit("the module must stay in eval mode and torch on the requested threads")
        x = x.to(device)
        map_diff = check_maps(full, floor_gradcam(module.net, x), history_size)

        # The callback's parts, from the public functions, on maps and captions computed once here.
        engine = CAMEngine(module, LAYER, METHOD)
        result = engine(x, "predicted")
        maps = result.normalized(LAYER, METHOD)
        probs = result.outputs.softmax(dim=1)
        captions = [
            f"y={int(y)} p={int(p)} {float(q):.2f}"
            for y, p, q in zip(loader.dataset.tensors[1], probs.argmax(dim=1), probs.amax(dim=1), strict=True)
        ]
        overlay = overlay_grid(x, maps, alpha=0.5, colormap="jet", captions=captions)
        heat = heatmap_grid(maps, colormap="jet")
        # About what the event writer checksums for the two images (each record also holds step and time):
        # the overlay as JPEG (the callback's default `image_format`), the heatmaps as PNG.
        records = [
            encode_jpeg(overlay), image_summary("cam/heatmap", heat, dataformats="CHW").SerializeToString()
        ]
        writer = SummaryWriter(log_dir=str(root / "sink"))
        sink = TensorBoardSink(writer)

        def render() -> None:
            overlay_grid(x, maps, alpha=0.5, colormap="jet", captions=captions)
            heatmap_grid(maps, colormap="jet")

        def log_to_sink() -> None:
            sink.add_image("cam/overlay", overlay, 0, "jpeg")
            sink.add_image("cam/heatmap", heat, 0, "png")
            sink.flush()

        labels = loader.dataset.tensors[1]
        kept = shrink_maps(maps.float().cpu(), history_size)
        timeline_frames = {(LAYER, METHOD): kept.unsqueeze(0).repeat(MAX_FRAMES, 1, 1, 1)}
        frame_steps = {(LAYER, METHOD): list(range(MAX_FRAMES))}
        shown = x.cpu()
        history = MapHistory(history_size)
        for step in range(MAX_FRAMES):  # the most frames a history keeps
            history.record(LAYER, METHOD, maps.float().cpu(), step, None, 0)

        def focus() -> None:
            focus_numbers(shrink_maps(maps.float(), history_size), labels)

        def timeline_copy() -> None:  # what the hook does for the timeline: copy the kept frames
            history.frames()

        def timeline() -> None:  # what the background writer does with them
            summary_records(timeline_frames, frame_steps, shown, 0, Display(), kind="_timeline")

        def focus_and_timeline() -> None:
            focus()
            timeline_copy()

        def direct(setup: Setup, on: pl.LightningModule = module) -> Variant:
            return Variant(
                call=lambda: setup.hook(on),
                before=lambda: event_bytes(setup.log_dir),
                after=setup.after,
            )

        variants: dict[str, Variant] = {
            "plain": Variant(lambda: plain_forward(module.net, x)),
            "floor": Variant(lambda: floor_gradcam(module.net, x)),
            "engine": Variant(lambda: engine(x, "predicted").normalized(LAYER, METHOD)),
            "render": Variant(render),
            "sink": Variant(log_to_sink),
            "crc_python": Variant(lambda: [python_masked_crc32c(record) for record in records]),
            "crc_native": Variant(lambda: [masked_crc32c(record) for record in records]),
            "callback": direct(full),
            "noheat": direct(noheat),
            "png": direct(setups["png"]),
            "natural": direct(setups["natural"]),
            "methods3": direct(setups["methods3"]),
            "focus": Variant(focus),
            "timeline_copy": Variant(timeline_copy),
            "timeline": Variant(timeline),
            "focus_timeline": Variant(focus_and_timeline),
        }
        if not args.no_multi:
            variants["floor_l3_l4"] = Variant(lambda: floor_two_layers(module.net, x))
            variants["multi"] = direct(setups["multi"])
        if small is not None:
            small_x = small_x.to(device)
            small_net = small_module.net
            small_layer = small_net.features[6]
            check_small = floor_gradcam_at(small_net, small_layer, small_x)
            frames = small.callback.history.frames()[(SMALL_LAYER, METHOD)]
            if float((frames[-1] - shrink_maps(check_small.cpu(), history_size)).abs().max()) > 1e-4:
                raise SystemExit("the small CNN's callback maps and its floor's differ; not timing")
            variants["small_plain"] = Variant(lambda: plain_forward(small_net, small_x))
            small_floor = functools.partial(floor_gradcam_at, small_net, small_layer, small_x)
            variants["small_floor"] = Variant(small_floor)
            variants["small_callback"] = direct(small, small_module)

        if not args.no_validate:
            # The same callback as "callback", run by Lightning: the hook is timed where it is called.
            insitu_cb = make_callback(tag_prefix="insitu")
            hook = insitu_cb.on_validation_epoch_end
            last: dict[str, float] = {}

            def timed_hook(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                start = clock()
                hook(trainer, pl_module)
                last["seconds"] = clock() - start

            insitu_cb.on_validation_epoch_end = timed_hook  # type: ignore[method-assign]
            with_cb = set_up(insitu_cb, module, loader, root, "validate_with")
            setups["insitu"] = with_cb
            without = make_trainer([], root, "validate_without")
            without.validate(module, loader, verbose=False)

            def validate_with() -> float:
                last.clear()
                with_cb.trainer.validate(module, loader, verbose=False)
                return last["seconds"]

            def counted(_: Any) -> None:
                with_cb.calls += 1

            variants["validate_with"] = Variant(validate_with, after=counted, side="insitu")
            variants["validate_without"] = Variant(lambda: without.validate(module, loader, verbose=False))
            torch.set_num_threads(args.threads)

        times = time_variants(variants, reps, warmup, clock)

        # Outside the timing: what the calls wrote.
        for setup in setups.values():
            # teardown writes whatever is still queued
            setup.callback.teardown(setup.trainer, setup.trainer.lightning_module, "validate")
            setup.trainer.logger.finalize("success")
        writer.close()
        prefix = {"callback": "cam", **{key: key for key in setups if key != "callback"}}
        for key, setup in setups.items():
            layers = MULTI_LAYERS if key == "multi" else [SMALL_LAYER] if key == "small" else [LAYER]
            methods = MULTI_METHODS if key in ("multi", "methods3") else [METHOD]
            pairs = [(layer, method) for layer in layers for method in methods]
            names = Display(tag_prefix=prefix[key])  # the callback's own naming (gradcam++ -> gradcampp)
            tags = [names.tag("", pair) for pair in pairs]
            if key != "noheat":
                tags += [names.tag("_heatmap", pair) for pair in pairs]
            scalar_tags = [names.number(pair, "change_prev") for pair in pairs]
            # Each `trainer.validate` starts its own history, so the in-situ runs have no drift to log.
            check_written(setup, tags, scalar_tags if key != "insitu" else [])
        calls = {key: setup.calls for key, setup in setups.items()}
        growth = statistics.median(full.growth or [0])
        growth_noheat = statistics.median(noheat.growth or [0])

    times["callback_drain"] = full.drains or []
    if small is not None:
        times["small_callback_drain"] = small.drains or []
    if "validate_with" in times:
        times["validate_diff"] = difference(times, "validate_with", "validate_without")
    times["split"] = difference(times, "callback", "engine")

    print(f"Time per validation ({args.clock} clock, {DEVICE}), {images} images of {size}x{size}")
    print()
    med = print_table(times, ROW_ORDER, LABELS, "floor", "plain", TARGETS, images)
    print(
        '`x floor (paired)`: median over rounds of the per-round ratio; rows marked "per round" are '
        "medians of same-round differences; the writer's rows are wall-clock waits for the drain, not paired."
    )
    per_pair = (med["methods3"] - med["callback"]) / 2 / med["floor"]
    paired_pair = statistics.median(
        (a - b) / 2 / f for a, b, f in zip(times["methods3"], times["callback"], times["floor"], strict=True)
    )
    verdict_pair = verdict(per_pair, PAIR_TARGET)
    print(
        f"- each further (layer, method) pair: (3 methods - 1 method) / 2 = {per_pair:.3f} x floor (paired "
        f"{paired_pair:.3f}); target {verdict_pair[0]}: {verdict_pair[1]}."
    )
    if "multi" in med:
        extra = (med["multi"] - med["floor_l3_l4"] - (med["callback"] - med["floor"])) / 5 / med["floor"]
        print(
            f"- 2 layers x 3 methods: callback vs the 2-layer floor {med['multi'] / med['floor_l3_l4']:.3f} "
            f"(paired {paired_ratio(times, 'multi', 'floor_l3_l4'):.3f}); beyond the 2-layer floor and the "
            f"one-pair overhead, {extra:.3f} x floor per further pair (5 of them)."
        )
    print(
        f"- callback split: maps {med['engine'] * 1e3:.0f} ms, drift + hand-over "
        f"{med['split'] * 1e3:.0f} ms per round ({med['split'] / med['callback']:.0%} of the hook); "
        f"rendering alone {med['render'] * 1e3:.0f} ms. The writer's work for one validation, alone: "
        f"{med['sink'] * 1e3:.0f} ms; the CRC of its images {med['crc_native'] * 1e3:.2f} ms native against "
        f"{med['crc_python'] * 1e3:.0f} ms in TensorBoard's pure Python."
    )
    print(
        f"- checks: the callback's maps equal the floor's (max abs difference {map_diff:.1g} at "
        f"{history_size}x{history_size}); every call wrote all its images and drift scalars, read back from "
        f"the event files ({', '.join(f'{key} {n} calls' for key, n in calls.items())}); each timed call "
        f"added a median {growth / 1024:.0f} KiB to the event files ({growth_noheat / 1024:.0f} KiB "
        "without heatmaps), written before the next call."
    )
    if small is not None:
        print(
            f"\nSmall CNN ({args.small_images} images of {args.small_size}x{args.small_size}, 3 "
            f"convolutions, layer `{SMALL_LAYER}`, gradcam), same rounds ({args.clock} clock, {DEVICE})\n"
        )
        print_table(times, list(SMALL_LABELS), SMALL_LABELS, "small_floor", "small_plain",
                    {"small_callback": SMALL_TARGET}, args.small_images)
    print(f"1-minute load average at the end (this run included): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
