"""Make ``docs/demo.png``, the README's picture, from real runs of the two YAML experiments.

Trains ``configs/demo.yaml`` and ``configs/shortcut.yaml`` as configured (about two minutes on two CPU
cores; the runs go to a temporary folder unless ``--log-dir`` is given), then composes one picture, a row
per validation image:

* the image and its class;
* the demo run: the Grad-CAM map of the true class blended over the image after the first, a middle and
  the last validation, headed with the epoch, the validation accuracy and the pointing game (on how many
  of the callback's images the map peaks on the object);
* the shortcut run (a class-coded marker in the corner of every training image, none in validation): the
  map of the same validation image after the last validation, then the map of that image with the marker
  painted in, recomputed from the run's final checkpoint.

Every map except the last column is the callback's own output, read back from the run's event file: the
``cam_heatmap/<layer>/<method>`` grids are cut into tiles and their colours turned back into map values
(the colour map is a lookup table, so this is exact), then resized smoothly to the picture's tile size::

    python scripts/make_readme_figure.py                                        # trains, then draws
    python scripts/make_readme_figure.py --demo-run logs/demo/version_0 --shortcut-run logs/shortcut/version_0
    python scripts/make_readme_figure.py --no-shortcut                          # the demo run alone
"""

from __future__ import annotations

import argparse
import functools
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _runs import ROOT, events, fit, per_validation, run_config
from PIL import Image
from torch.nn import functional as F

from cam_callback import compute_cam
from cam_callback.callback.publishing import name_part
from cam_callback.demo import ShapesDataModule, ShapesDataset
from cam_callback.demo.classifier import ImageClassifier
from cam_callback.render import blend, colorize, colormap_lut, wrap_text

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (30, 30, 30)
MUTED = (95, 95, 95)
GAP = 6  # pixels between tiles
PANEL_GAP = 18  # extra space between the picture's panels


# ------------------------------------------------------------------------------------------------ reading


@functools.cache
def run_events(run: Path):
    """The run's event file, read once (it holds every logged image: a few seconds to parse)."""
    return events(run)


def callback_options(run: Path) -> dict:
    """The GradCAMCallback's ``init_args`` from the run's saved configuration."""
    callbacks = run_config(run)["trainer"]["callbacks"]
    return next(c["init_args"] for c in callbacks if c["class_path"].endswith("GradCAMCallback"))


def validation_dataset(run: Path) -> ShapesDataset:
    """The run's validation split, rebuilt from its configuration (the data is drawn from fixed seeds)."""
    return ShapesDataModule(**run_config(run)["data"]["init_args"]).val_dataset


def logged_maps(run: Path, layer: str, method: str) -> tuple[list[int], np.ndarray]:
    """Steps and maps ``[T, N, H, W]`` in [0, 1] the callback logged as ``cam_heatmap/<layer>/<method>``.

    Each logged image is a grid of colour-mapped tiles (``ceil(sqrt(N))`` per row, 2-pixel borders); every
    pixel's colour is one entry of the colour map's 256-entry table, so its index gives back the map value.
    """
    options = callback_options(run)
    count = int(options["num_samples"])
    size = validation_dataset(run).image_size
    lut = (colormap_lut(options["colormap"]) * 255).round().numpy()  # [256, 3] RGB
    per_row, pad = math.ceil(math.sqrt(count)), 2
    steps, frames = [], []
    for event in run_events(run).Images(f"cam_heatmap/{layer}/{name_part(method)}"):
        if event.step == 0:
            continue  # the callback's maps when training starts, before the first epoch
        grid = cv2.imdecode(np.frombuffer(event.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        tiles = []
        for k in range(count):
            row, col = divmod(k, per_row)
            y, x = (0, 0) if count == 1 else (pad + row * (size + pad), pad + col * (size + pad))
            rgb = grid[y : y + size, x : x + size].reshape(-1, 1, 3).astype(np.float32)
            level = np.abs(rgb - lut[None]).sum(axis=2).argmin(axis=1)  # nearest table entry
            tiles.append(level.reshape(size, size) / 255.0)
        steps.append(event.step)
        frames.append(np.stack(tiles))
    if not frames:
        tag = f"cam_heatmap/{layer}/{name_part(method)}"
        raise SystemExit(f"{run}: no {tag} images (log_heatmaps must be on)")
    return steps, np.stack(frames).astype(np.float32)


def final_checkpoint(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


# ------------------------------------------------------------------------------------------------ drawing


def tile(image: np.ndarray, heat: np.ndarray | None, side: int, alpha: float, colormap: str) -> np.ndarray:
    """RGB ``image`` ``[h, w, 3]`` in [0, 1] with ``heat`` ``[h, w]`` over it, as uint8 ``[side, side, 3]``.

    The image is enlarged with cubic interpolation, the map bilinearly (as the callback upsamples its maps).
    """
    big = np.clip(cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC), 0, 1)
    shown = torch.from_numpy(big).permute(2, 0, 1)[None]
    if heat is not None:
        maps = F.interpolate(torch.from_numpy(heat)[None, None], size=(side, side), mode="bilinear")[:, 0]
        shown = blend(shown, colorize(maps.clamp(0, 1), colormap), alpha)
    return (shown[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def text(
    canvas: np.ndarray, line: str, centre_x: int, baseline: int, scale: float,
    colour: tuple[int, int, int] = INK, bold: bool = False, room: int | None = None,
) -> None:
    """Centre ``line`` on ``centre_x``, shrunk to fit ``room`` pixels when given."""
    thickness = 2 if bold else 1
    width = cv2.getTextSize(line, FONT, scale, thickness)[0][0]
    if room is not None and width > room:
        scale *= room / width
        thickness = 1
        width = cv2.getTextSize(line, FONT, scale, thickness)[0][0]
    cv2.putText(canvas, line, (centre_x - width // 2, baseline), FONT, scale, colour, thickness, cv2.LINE_AA)


def compose(columns: list[dict], rows: int, side: int, footer: str) -> np.ndarray:
    """Lay out columns of tiles under their headers, with a ``footer`` of small print below.

    Each column: ``tiles`` (``rows`` uint8 images), ``head`` (header lines), ``panel`` (the title of the
    group of columns it belongs to, drawn once over the group).
    """
    lefts, x = [], GAP
    for k, column in enumerate(columns):
        if k and column["panel"] != columns[k - 1]["panel"]:
            x += PANEL_GAP
        lefts.append(x)
        x += side + GAP
    top = 44 + 17 * max(len(c["head"]) for c in columns)
    bottom = top + rows * (side + GAP)
    footer_lines = wrap_text(footer, 0.4, 1, x - 2 * GAP, FONT)
    canvas = np.full((bottom + 16 * len(footer_lines) + 6, x, 3), 255, np.uint8)
    for i, line in enumerate(footer_lines):
        cv2.putText(canvas, line, (GAP, bottom + 14 + 16 * i), FONT, 0.4, MUTED, 1, cv2.LINE_AA)
    for column, left in zip(columns, lefts, strict=True):
        for r, picture in enumerate(column["tiles"]):
            y = top + r * (side + GAP)
            canvas[y : y + side, left : left + side] = picture
        for i, line in enumerate(column["head"]):
            text(canvas, line, left + side // 2, 48 + 17 * i, 0.45, INK if i == 0 else MUTED, room=side)
    # Panel titles, centred over their columns, with a rule under each.
    k = 0
    while k < len(columns):
        end = k
        while end + 1 < len(columns) and columns[end + 1]["panel"] == columns[k]["panel"]:
            end += 1
        if columns[k]["panel"]:
            a, b = lefts[k], lefts[end] + side
            text(canvas, columns[k]["panel"], (a + b) // 2, 20, 0.5, bold=True, room=b - a)
            cv2.line(canvas, (a, 29), (b, 29), (170, 170, 170), 1, cv2.LINE_AA)
        k = end + 1
    return canvas


def caption(picture: np.ndarray, line: str) -> np.ndarray:
    """Write a class name on a dark band at the bottom of a tile."""
    picture = picture.copy()
    side = picture.shape[0]
    band = 20
    picture[side - band :] = (picture[side - band :] * 0.35).astype(np.uint8)
    cv2.putText(picture, line, (6, side - 6), FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


# ------------------------------------------------------------------------------------------------ main


def pick(count: int, wanted: int) -> list[int]:
    """First, middle and last of ``count`` validations (or fewer, when there are fewer)."""
    return sorted({0, (count - 1) // 2, count - 1})[:wanted] if count else []


def headline(run: Path, layer: str, method: str, t: int, count: int) -> list[str]:
    """``epoch``, validation accuracy and pointing game (as a count of images) of validation ``t``."""
    accumulator = run_events(run)
    accuracy = per_validation(accumulator, "val/acc")
    hits = per_validation(accumulator, f"cam_drift/{layer}/{name_part(method)}/pointing_game")
    return [
        f"epoch {t + 1}",
        f"val acc {accuracy[t]:.2f}" if t < len(accuracy) else "",
        f"peak on shape {round(hits[t] * count)}/{count}" if t < len(hits) else "",
    ]


def draw(args: argparse.Namespace, demo: Path, shortcut: Path | None) -> np.ndarray:
    """The picture, uint8 RGB ``[H, W, 3]``."""
    options = callback_options(demo)
    colormap, side, samples, count = options["colormap"], args.tile, args.samples, int(options["num_samples"])
    if not all(0 <= i < count for i in samples):
        raise SystemExit(f"--samples must lie in [0, {count}): the callback explains {count} images")
    dataset = validation_dataset(demo)
    rendered = [dataset.render(i) for i in samples]  # (RGB [H, W, 3] in [0, 1], label, mask), unnormalised
    images = [image for image, _, _ in rendered]

    columns = [{
        "panel": "",
        "head": ["validation image"],
        "tiles": [caption(tile(image, None, side, 0, colormap), dataset.classes[label])
                  for image, label, _ in rendered],
    }]

    steps, frames = logged_maps(demo, args.layer, args.method)
    for t in pick(len(steps), 3):
        columns.append({
            "panel": "demo run: attention moves onto the shape",
            "head": headline(demo, args.layer, args.method, t, count),
            "tiles": [
                tile(im, frames[t, i], side, args.alpha, colormap)
                for im, i in zip(images, samples, strict=True)
            ],
        })

    if shortcut is not None:
        panel = "shortcut run: learns the marker"
        steps, frames = logged_maps(shortcut, args.layer, args.method)
        last = len(steps) - 1
        columns.append({
            "panel": panel,
            "head": headline(shortcut, args.layer, args.method, last, count),
            "tiles": [
                tile(im, frames[-1, i], side, args.alpha, colormap)
                for im, i in zip(images, samples, strict=True)
            ],
        })
        checkpoint = final_checkpoint(shortcut)
        if checkpoint is not None:
            # The same validation images with the training marker painted in, explained by the final weights;
            # all `count` of them, to count the maps that peak in the marker's corner.
            marked = ShapesDataset(
                count, dataset.image_size, dataset.num_classes, seed=dataset.seed, shortcut=True
            )
            inputs = torch.stack([marked[i]["image"] for i in range(count)])
            labels = torch.tensor([marked.render(i)[1] for i in range(count)])
            model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
            maps = compute_cam(model, inputs, args.layer, method=args.method, target=labels)  # [N, H, W]
            corner = dataset.image_size // 4  # the top-left sixteenth of the image, around the marker
            flat = maps.flatten(1)
            peak = flat.argmax(dim=1)
            rows, cols = peak // maps.shape[-1], peak % maps.shape[-1]
            in_corner = (rows < corner) & (cols < corner) & (flat.amax(dim=1) > 0)
            columns.append({
                "panel": panel,
                "head": ["+ the marker", "(final weights)", f"peak in corner {int(in_corner.sum())}/{count}"],
                "tiles": [
                    tile(marked.render(i)[0], maps[i].numpy(), side, args.alpha, colormap) for i in samples
                ],
            })
    footer = (
        f"Grad-CAM ({args.method}, layer {args.layer}) of the true class on {len(samples)} of the {count} "
        "validation images the callback explains. Maps: the runs' TensorBoard images"
    )
    if shortcut is None:
        footer += "."
    else:
        footer += (
            ", the last column recomputed from the final checkpoint. The shortcut run's training images "
            "carry a class-coded marker in the top-left corner, its validation images do not."
        )
    return compose(columns, len(samples), side, footer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo.png"), help="the picture to write")
    parser.add_argument("--log-dir", help="keep the two runs here (default: a temporary folder)")
    parser.add_argument("--demo-run", help="draw this existing demo run instead of training one")
    parser.add_argument("--shortcut-run", help="draw this existing shortcut run instead of training one")
    parser.add_argument("--no-shortcut", action="store_true", help="leave the shortcut run out")
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 1, 2, 3, 9, 10],
                        help="validation images to show, among the num_samples the callback explains")
    parser.add_argument("--layer", default="model.features.7", help="logged layer name (features.-1)")
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--tile", type=int, default=140, help="tile side in pixels")
    parser.add_argument("--alpha", type=float, default=0.5, help="map opacity")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        log_dir = args.log_dir or scratch
        demo = Path(args.demo_run) if args.demo_run else fit("demo.yaml", log_dir)
        shortcut = None
        if not args.no_shortcut:
            shortcut = Path(args.shortcut_run) if args.shortcut_run else fit("shortcut.yaml", log_dir)
        picture = draw(args, demo, shortcut)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours, dithered, keep the file small (a third of full colour) without visible banding.
    rgb = Image.fromarray(picture)
    palette = rgb.quantize(256, method=Image.Quantize.FASTOCTREE)
    rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
    print(f"wrote {out}: {picture.shape[1]}x{picture.shape[0]} px, {out.stat().st_size / 1024:.0f} KB")
    print(f"wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
