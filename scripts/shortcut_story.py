"""The shortcut story in numbers: the demo and the shortcut experiment side by side, epoch by epoch.

Trains ``configs/demo.yaml`` and ``configs/shortcut.yaml`` as configured (about two minutes on two CPU
cores), then prints one Markdown table read back from the two event files: training and validation
accuracy, and how much of the Grad-CAM maps of the 16 fixed validation images falls on the objects
(``energy_in_mask``: mean share of each map inside the object mask; ``pointing_game``: share of maps whose
peak lies on the object), then the same story without masks: the ``consistency`` of the validation maps
and, in the shortcut run (``train_samples: 16``), of the first 16 training images' maps::

    python scripts/shortcut_story.py                               # runs land in logs/demo, logs/shortcut
    python scripts/shortcut_story.py --runs logs/demo/version_0 logs/shortcut/version_0   # no training

In the shortcut run every training image carries a class-coded marker in its top-left corner and no
validation image does: training accuracy climbs to 1.0 through the marker alone while validation accuracy
stays low, and the maps of the validation images leave the objects.
"""

from __future__ import annotations

import argparse
import time

from _runs import events, fit, per_validation

LAYERS = ("model.features.7", "model.features.5")  # features.-1 (8x8) and features.5 (16x16)
METHOD = "gradcam"


def table(runs: dict[str, str]) -> str:
    """One Markdown row per (run, epoch)."""
    head = ["run", "epoch", "train/acc", "val/acc"]
    for layer in LAYERS:
        short = layer.removeprefix("model.")
        head += [f"{short} energy_in_mask", f"{short} pointing_game"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for name, run in runs.items():
        accumulator = events(run)
        columns = [per_validation(accumulator, "train/acc"), per_validation(accumulator, "val/acc")]
        for layer in LAYERS:
            for metric in ("energy_in_mask", "pointing_game"):
                columns.append(per_validation(accumulator, f"cam_drift/{layer}/{METHOD}/{metric}"))
        epochs = max(len(c) for c in columns)
        for epoch in range(epochs):
            cells = [f"{c[epoch]:.3f}" if epoch < len(c) else "-" for c in columns]
            lines.append("| " + " | ".join([name, str(epoch + 1), *cells]) + " |")
    return "\n".join(lines)


def focus_table(runs: dict[str, str]) -> str:
    """One Markdown row per (run, epoch): the mask-free numbers of the last layer's Grad-CAM maps."""
    layer = LAYERS[0]
    head = ["run", "epoch", "val/acc", "consistency (validation)", "consistency (training samples)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for name, run in runs.items():
        accumulator = events(run)
        columns = [
            per_validation(accumulator, "val/acc"),
            per_validation(accumulator, f"cam_focus/{layer}/{METHOD}/consistency"),
            per_validation(accumulator, f"cam_train_focus/{layer}/{METHOD}/consistency"),
        ]
        for epoch in range(max(len(c) for c in columns)):
            cells = [f"{c[epoch]:.3f}" if epoch < len(c) else "-" for c in columns]
            lines.append("| " + " | ".join([name, str(epoch + 1), *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", default="logs", help="where the two runs are logged (default: logs)")
    parser.add_argument(
        "--runs", nargs=2, metavar=("DEMO", "SHORTCUT"), help="read these two runs instead of training"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.runs:
        demo, shortcut = args.runs
    else:
        demo = fit("demo.yaml", args.log_dir)
        shortcut = fit("shortcut.yaml", args.log_dir)
    print()
    print(f"Grad-CAM ({METHOD}) of the 16 fixed validation images; demo: {demo}, shortcut: {shortcut}")
    print()
    print(table({"demo": str(demo), "shortcut": str(shortcut)}))
    print()
    print(f"Without masks: {LAYERS[0]}, {METHOD}")
    print()
    print(focus_table({"demo": str(demo), "shortcut": str(shortcut)}))
    print()
    print(f"wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
