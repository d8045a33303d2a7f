"""The focus numbers of clean and shortcut runs: the measurements behind the attention alarm's thresholds.

Trains the demo's tiny CNN (``tinycnn``; ``--arch resnet18``: layers ``layer4`` and ``layer3``) on the
synthetic shapes (48x48 by default) with ``GradCAMCallback`` on the demo's layers and methods, and reads the
focus numbers of every validation back from a ``CSVLogger``:

* ``clean``: objects at random positions, nothing else;
* ``corner`` / ``corner_br`` / ``stripe`` / ``interior``: a class-coded mark in the training AND the
  validation images: a square of the demo's marker size (a tenth of the side) in the top-left corner, the
  same in the bottom-right corner, a 3-pixel stripe along the top edge, or the square inside the image,
  clear of the border band (its corner at a quarter of the height and five eighths of the width);
* ``per_class``: the square in a place of its own for each class, a quarter of the way in from two edges;
* ``train_only``: the demo's marker in the training images only (``configs/shortcut.yaml``'s setup),
  with ``train_samples`` explaining the first training samples too.

Each run reports validation accuracy, the accuracy on the same validation images without the mark (how
much the model relies on it), and, per focus number, the value at the last validation and the highest
(or lowest) over the validations after the step-0 frame, over all four (layer, method) pairs, and the
callback's own alarms (the ``AttentionWarning`` messages, by cause)::

    PYTHONPATH=. .venv/bin/python benchmarks/attention_alarm.py --json runs.jsonl   # every run
    PYTHONPATH=. .venv/bin/python benchmarks/attention_alarm.py --runs clean corner --seeds 0
    PYTHONPATH=. .venv/bin/python benchmarks/attention_alarm.py --from-json runs.jsonl   # the table again
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cam_callback import GradCAMCallback
from cam_callback.callback.publishing import name_part
from cam_callback.demo import ImageClassifier
from cam_callback.demo.shapes import ShapesDataset

LAYERS = {"tinycnn": ["model.features.-1", "model.features.5"], "resnet18": ["model.layer4", "model.layer3"]}
METHODS = ["gradcam", "gradcam++"]
PATTERNS = ("clean", "corner", "corner_br", "stripe", "interior", "per_class", "train_only")
SIZE = 64


def _mark_region(pattern: str, size: int, label: int = 0) -> tuple[slice, slice]:
    """Rows and columns the mark covers in a ``size`` x ``size`` image of class ``label``."""
    side = max(3, round(size / 10))  # the demo's marker
    inner = (size // 4, size * 5 // 8)  # inside the image, clear of the border band
    if pattern == "per_class":  # each class's mark in its own place, a quarter of the way in
        row, col = (size // 4, size * 3 // 4 - side)[label // 2], (size // 4, size * 3 // 4 - side)[label % 2]
        return slice(row, row + side), slice(col, col + side)
    return {
        "corner": (slice(0, side), slice(0, side)),
        "train_only": (slice(0, side), slice(0, side)),
        "corner_br": (slice(size - side, size), slice(size - side, size)),
        "stripe": (slice(0, 3), slice(0, size)),
        "interior": (slice(inner[0], inner[0] + side), slice(inner[1], inner[1] + side)),
    }[pattern]


class Rendered(Dataset):
    """A ShapesDataset drawn once into memory, with a class-coded mark painted in (or not)."""

    def __init__(self, length: int, seed: int, pattern: str | None, size: int = SIZE) -> None:
        shapes = ShapesDataset(length, size, 4, seed=seed)
        items = [shapes[i] for i in range(length)]
        self.images = torch.stack([item["image"] for item in items])
        self.labels = torch.stack([item["label"] for item in items])
        if pattern is not None and pattern != "clean":
            mean = torch.tensor(ShapesDataset.MEAN).view(3, 1, 1)
            std = torch.tensor(ShapesDataset.STD).view(3, 1, 1)
            for i, label in enumerate(self.labels.tolist()):
                rows, cols = _mark_region(pattern, size, label)
                colour = (torch.tensor(shapes.marker_color(label)).view(3, 1, 1) - mean) / std
                self.images[i, :, rows, cols] = colour

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


class Data(pl.LightningDataModule):
    """Training and validation splits with the pattern's mark (validation unmarked for ``train_only``)."""

    def __init__(self, pattern: str, seed: int, num_train: int, num_val: int, size: int = SIZE) -> None:
        super().__init__()
        self.train_set = Rendered(num_train, 2 * seed, pattern, size)
        self.val_set = Rendered(num_val, 2 * seed + 1, None if pattern == "train_only" else pattern, size)
        self.val_unmarked = Rendered(num_val, 2 * seed + 1, None, size)
        self.num_classes = 4
        self.classes = ShapesDataset(1, SIZE, 4).classes

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=64)


def _accuracy(model: pl.LightningModule, data: Rendered) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.images).argmax(dim=1) == data.labels).float().mean())


def train(
    pattern: str, seed: int, epochs: int, num_train: int, num_val: int, size: int, arch: str = "tinycnn"
) -> dict[str, Any]:
    """One run; returns its accuracies, the alarms it raised and every logged focus number by step."""
    pl.seed_everything(seed, verbose=False)
    data = Data(pattern, seed, num_train, num_val, size)
    model = ImageClassifier(arch=arch, num_classes=4, lr=1e-3, weight_decay=1e-2)
    train_samples = 16  # the first 16 training samples too: their focus numbers and the gap
    callback = GradCAMCallback(
        layer=LAYERS[arch],
        method=METHODS,
        num_samples=16,
        target="label",
        mean=[0.5] * 3,
        std=[0.29] * 3,
        log_heatmaps=False,
        min_display_size=0,
        train_samples=train_samples,
    )
    with tempfile.TemporaryDirectory() as folder:
        logger = pl.loggers.CSVLogger(folder, name="run")
        trainer = pl.Trainer(
            max_epochs=epochs,
            callbacks=[callback],
            logger=logger,
            deterministic=True,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=50,
            accelerator="cpu",
            devices=1,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, datamodule=data)
        alarms = [str(w.message) for w in caught if w.category.__name__ == "AttentionWarning"]
        with open(Path(logger.log_dir) / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
    numbers: dict[str, dict[int, float]] = {}
    for row in rows:
        for name, value in row.items():
            if value and ("_focus/" in name or "_gap/" in name or name in ("val/acc", "train/acc")):
                numbers.setdefault(name, {})[int(row["step"])] = float(value)
    return {
        "pattern": pattern,
        "arch": arch,
        "seed": seed,
        "epochs": epochs,
        "size": size,
        "num_train": num_train,
        "val_acc": _accuracy(model, data.val_set),
        "unmarked_acc": _accuracy(model, data.val_unmarked),
        "alarms": alarms,
        "numbers": {k: {str(s): v for s, v in sorted(d.items())} for k, d in numbers.items()},
    }


def fired(run: dict[str, Any]) -> list[str]:
    """The callback's own alarms of a run, by samples: pairs warned (of them on the border), first step."""
    found: dict[str, list[tuple[int, bool]]] = {}
    for message in run["alarms"]:
        samples = "training" if "for the training samples" in message else "validation"
        step = re.search(r" at step (\d+)", message)
        border = "on the image's border" in message
        found.setdefault(samples, []).append((int(step.group(1)) if step else -1, border))
    said = []
    for samples in ("validation", "training"):
        if samples in found:
            warned = found[samples]
            border = sum(b for _, b in warned)
            where = f" ({border} on the border)" if border else ""
            said.append(f"{samples}: {len(warned)}{where} from step {min(s for s, _ in warned)}")
    return said


def _pairs(run: dict[str, Any], prefix: str, name: str, method: str | None = None) -> list[list[float]]:
    """Per (layer, method), optionally of one method: the values of ``name`` by step, step 0 first."""
    return [
        [v for _, v in sorted((int(s), v) for s, v in steps.items())]
        for key, steps in run["numbers"].items()
        if key.startswith(prefix)
        and key.endswith("/" + name)
        and (method is None or key.split("/")[-2] == name_part(method))
    ]


def _start_and_most(series: list[list[float]]) -> str:
    """``"<step 0> -> <most after it>"``, each the largest over the pairs."""
    if not series:
        return "-"
    start = max(s[0] for s in series)
    after = max((max(s[1:]) for s in series if len(s) > 1), default=float("nan"))
    return f"{start:.2f} -> {after:.2f}"


def table(runs: list[dict[str, Any]], prefix: str = "cam_focus/") -> str:
    """One Markdown row per run: accuracies, the focus numbers at step 0 and at most after it, the alarms."""
    head = [
        "run",
        "seed",
        "epochs",
        "val acc",
        "acc without mark",
        "consistency Grad-CAM",
        "consistency Grad-CAM++",
        "border_share",
        "concentration",
        "alarms (pairs of 4)",
        "first step judged",
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 4)) + "|---|---:|",
    ]
    for run in sorted(runs, key=_order):
        arch = run.get("arch", "tinycnn")
        name = run["pattern"] if arch == "tinycnn" else f"{run['pattern']} ({arch})"
        cells = [name, str(run["seed"]), str(run["epochs"]), f"{run['val_acc']:.2f}"]
        cells.append(f"{run['unmarked_acc']:.2f}")
        cells.append(_start_and_most(_pairs(run, prefix, "consistency", "gradcam")))
        cells.append(_start_and_most(_pairs(run, prefix, "consistency", "gradcam++")))
        cells.append(_start_and_most(_pairs(run, prefix, "border_share")))
        cells.append(_start_and_most(_pairs(run, prefix, "concentration")))
        cells.append("; ".join(fired(run)) or "none")
        cells.append(_first_learned(run))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _order(run: dict[str, Any]) -> tuple[bool, str, int, int, int]:
    """The tiny CNN's runs first, then by pattern, seed and length."""
    arch = run.get("arch", "tinycnn")
    return (arch != "tinycnn", arch, PATTERNS.index(run["pattern"]), run["seed"], run.get("epochs", 0))


def _first_learned(run: dict[str, Any]) -> str:
    """The first step after step 0 whose validation accuracy is above :func:`learned`'s level."""
    accuracy = run["numbers"].get("val/acc", {})
    steps = [int(s) for s, v in accuracy.items() if int(s) > 0 and v > (1 + 1 / 4) / 2]
    return str(min(steps)) if steps else "never"


def _last(run: dict[str, Any], prefix: str, name: str, method: str | None = None) -> str:
    """The largest over the pairs of ``name`` at the last validation."""
    series = _pairs(run, prefix, name, method)
    return f"{max(s[-1] for s in series):.2f}" if series else "-"


def gap_table(runs: list[dict[str, Any]]) -> str:
    """Training against validation samples at the last validation: the training focus numbers and the gaps."""
    head = [
        "run",
        "seed",
        "epochs",
        "train acc",
        "val acc",
        "train consistency Grad-CAM",
        "train border_share",
        "gap consistency Grad-CAM",
        "gap border_share",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for run in sorted(runs, key=_order):
        train_acc = run["numbers"].get("train/acc", {})
        arch = run.get("arch", "tinycnn")
        name = run["pattern"] if arch == "tinycnn" else f"{run['pattern']} ({arch})"
        cells = [name, str(run["seed"]), f"{run['epochs']} ({run.get('size', 48)} px)"]
        cells.append(f"{list(train_acc.values())[-1]:.2f}" if train_acc else "-")
        cells.append(f"{run['val_acc']:.2f}")
        cells.append(_last(run, "cam_train_focus/", "consistency", "gradcam"))
        cells.append(_last(run, "cam_train_focus/", "border_share"))
        cells.append(_last(run, "cam_gap/", "consistency", "gradcam"))
        cells.append(_last(run, "cam_gap/", "border_share"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--clean-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-val", type=int, default=128)
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (default: 48)")
    parser.add_argument("--arch", choices=sorted(LAYERS), default="tinycnn", help="the demo's model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", help="append each run's results to this JSON-lines file")
    parser.add_argument("--from-json", help="print the table of a JSON-lines file; train nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        runs = [json.loads(line) for line in Path(args.from_json).read_text().splitlines() if line]
    else:
        runs = []
        torch.set_num_threads(args.threads)
        print(f"1-minute load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
        for pattern in args.runs:
            for seed in args.clean_seeds if pattern == "clean" else args.seeds:
                start = time.perf_counter()
                run = train(pattern, seed, args.epochs, args.num_train, args.num_val, args.size, args.arch)
                run["seconds"] = round(time.perf_counter() - start)
                runs.append(run)
                print(f"{pattern} seed {seed}: {run['seconds']} s, val acc {run['val_acc']:.2f}", flush=True)
                if args.json:
                    with open(args.json, "a") as handle:
                        handle.write(json.dumps(run) + "\n")
    print(table(runs))
    with_training = [r for r in runs if any(k.startswith("cam_gap/") for k in r["numbers"])]
    if with_training:
        print()
        print(gap_table(with_training))


if __name__ == "__main__":
    main()
