"""Faithfulness: what its forwards cost against as many plain forwards, and what chance looks like.

Cost: torchvision resnet18 (weights=None, eval), random 224x224 images, Grad-CAM maps of ``layer4``;
``faithfulness_numbers`` for one (layer, method) against the same number of plain forwards of
``chunk_size`` images under ``torch.no_grad()`` (the batch's own probabilities included on both sides).
Target: ratio <= 1.15.

Chance: the demo's tiny CNN trained on the clean shapes (48 px, as ``attention_alarm.py``), then deletion
and insertion of its Grad-CAM maps against maps of uniform noise (a random ranking of the pixels)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_faithfulness.py            # both parts
    PYTHONPATH=. .venv/bin/python benchmarks/bench_faithfulness.py --no-chance --images 4 --size 112
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import build_inputs, build_model

from cam_callback import compute_cam
from cam_callback.capture.faithfulness import faithfulness_numbers, forward_count
from cam_callback.core.faithfulness import DEFAULT_STEPS, FAITHFULNESS_NAMES


def cost(images: int, size: int, chunk_size: int, rounds: int) -> None:
    """Faithfulness forwards against as many plain forwards, interleaved rounds, medians."""
    model = build_model().eval()
    x = build_inputs(images, size)
    maps = compute_cam(model, x, "layer4")
    classes = model(x).argmax(dim=1).detach()
    count = forward_count(FAITHFULNESS_NAMES, images, chunk_size) + -(-images // chunk_size)

    def split(total: int) -> list[int]:
        return [min(chunk_size, total - start) for start in range(0, total, chunk_size)]

    # The same forwards, of the same sizes: the batch, two curves, the masked images.
    sizes = split(images) + 2 * split((DEFAULT_STEPS + 1) * images) + split(images)
    assert len(sizes) == count
    copies = x[torch.arange(max(sizes)) % images]

    def plain() -> None:
        with torch.no_grad():
            for n in sizes:
                model(copies[:n])

    def faith() -> None:
        faithfulness_numbers(
            model, x, {("layer4", "gradcam"): maps}, classes, FAITHFULNESS_NAMES, chunk_size=chunk_size
        )

    times: dict[str, list[float]] = {"plain": [], "faith": []}
    for _ in range(rounds + 1):
        for name, call in (("plain", plain), ("faith", faith)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    ratios = [f / p for f, p in zip(times["faith"][1:], times["plain"][1:], strict=True)]
    print(
        f"{images} images of {size}x{size}, chunk_size {chunk_size}, {DEFAULT_STEPS} steps: {count} forwards"
    )
    print("| | median s | x plain forwards (paired) |")
    print("|---|---:|---:|")
    print(
        f"| {count} plain forwards of the same sizes | {statistics.median(times['plain'][1:]):.2f} | 1.000 |"
    )
    print(
        f"| faithfulness, all four numbers | {statistics.median(times['faith'][1:]):.2f} | "
        f"{statistics.median(ratios):.3f} (target <= 1.15) |"
    )


def chance(epochs: int, seed: int) -> None:
    """Deletion and insertion of Grad-CAM maps against a random ranking, on a trained tiny CNN."""
    import pytorch_lightning as pl
    from attention_alarm import Data

    from cam_callback.demo import ImageClassifier

    pl.seed_everything(seed, verbose=False)
    data = Data("clean", seed, 1000, 64, 48)
    model = ImageClassifier(arch="tinycnn", num_classes=4)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, datamodule=data)
    model.eval()
    x, y = data.val_set.images, data.val_set.labels
    accuracy = float((model(x).argmax(dim=1) == y).float().mean())
    maps = {
        ("model.features.7", "gradcam"): compute_cam(model, x, "model.features.7", target=y),
        ("random", "uniform noise"): torch.rand(
            x.shape[0], *x.shape[-2:], generator=torch.Generator().manual_seed(0)
        ),
    }
    numbers = faithfulness_numbers(model, x, maps, y, FAITHFULNESS_NAMES)
    print(f"tiny CNN, {epochs} epochs, validation accuracy {accuracy:.2f}, {len(y)} images, target = label")
    print("| maps | " + " | ".join(FAITHFULNESS_NAMES) + " |")
    print("|---|" + "---:|" * len(FAITHFULNESS_NAMES))
    for key, values in numbers.items():
        print(f"| {key[0]} {key[1]} | " + " | ".join(f"{values[n]:.3f}" for n in FAITHFULNESS_NAMES) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--no-chance", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"1-minute load average at the start: {load:.2f}; torch threads {torch.get_num_threads()}")
    if not args.no_cost:
        cost(args.images, args.size, args.chunk_size, args.rounds)
    if not args.no_chance:
        chance(args.epochs, 0)


if __name__ == "__main__":
    main()
