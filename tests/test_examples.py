"""The scripts under ``examples/`` run as documented (tiny sizes) and write what they promise."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from events import read_events

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    """Run an example as a user would, in a fresh interpreter; return its standard output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package, as from its root
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=180, env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.parametrize("shortcut", [False, True], ids=["demo", "shortcut"])
def test_train_shapes_logs_overlays_and_drift_scalars(tmp_path, shortcut):
    tiny = [
        "--epochs=2", "--num-train=24", "--num-val=8", "--image-size=32", "--batch-size=8", "--num-samples=4",
        "--quiet", f"--log-dir={tmp_path / 'logs'}",
    ]
    stdout = _run("train_shapes.py", *tiny, *(["--shortcut"] if shortcut else []), cwd=tmp_path)
    run = tmp_path / "logs" / ("shortcut" if shortcut else "demo") / "version_0"
    assert f"run written to {run}" in stdout

    events = read_events(str(run))
    images, scalars = set(events.Tags()["images"]), set(events.Tags()["scalars"])
    assert {"val/acc", "train/acc"} <= scalars
    # 24 images in batches of 8: 3 steps an epoch, each validation's metrics logged at steps 2 and 5.
    val_steps = [e.step for e in events.Scalars("val/acc")]
    assert val_steps == [2, 5]
    for layer in ("model.features.7", "model.features.5"):  # features.-1 is logged under its resolved name
        for method in ("gradcam", "gradcampp"):  # gradcam++ is named gradcampp in tags and metric names
            overlays = events.Images(f"cam/{layer}/{method}")
            assert [e.step for e in overlays] == [0, *val_steps]  # training starts, then each validation
            # 4 tiles, 2 x 2; the 32-pixel inputs are shown 4 x enlarged, at the default 128-pixel minimum.
            assert (overlays[0].width, overlays[0].height) == (2 * 128 + 3 * 2,) * 2
            assert f"cam_heatmap/{layer}/{method}" in images
            assert f"cam_summary/{layer}/{method}" in images
            # The drift numbers are Lightning metrics of the validations; the step-0 frame's are logged at
            # step 0 like theirs, except the changes, which need an earlier frame.
            for name in ("energy_in_mask", "pointing_game", "change_prev"):
                logged = events.Scalars(f"cam_drift/{layer}/{method}/{name}")
                assert [e.step for e in logged] == ([] if name == "change_prev" else [0]) + val_steps
                if name != "change_prev":
                    assert all(0.0 <= e.value <= 1.0 for e in logged)
            assert (run / f"cam_summary_{layer}_{method}.png").is_file()


def test_compute_cam_example_writes_the_overlay_picture(tmp_path):
    out = tmp_path / "pictures" / "cam.png"
    args = ["--model=tinycnn", "--num-images=3", "--image-size=32", "--tile=48", f"--out={out}"]
    stdout = _run("compute_cam_example.py", *args, "--methods", "gradcam", "layercam", cwd=tmp_path)
    assert f"wrote {out}" in stdout
    assert "CAMEngine: 4 maps per image" in stdout  # 2 layers x 2 methods
    picture = cv2.imread(str(out))
    assert picture is not None
    # 3 rows of 48-pixel tiles; 5 columns: the image, then 2 layers x 2 methods; 2-pixel borders.
    assert picture.shape == (3 * 50 + 2, 5 * 50 + 2, 3)
    assert picture.std() > 10  # a picture, not a blank canvas


def test_compute_cam_example_default_output_is_git_ignored():
    namespace = runpy.run_path(str(EXAMPLES / "compute_cam_example.py"), run_name="example")
    default = namespace["parse_args"]([]).out
    assert Path(default) == Path("out", "cam_example.png")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", default], cwd=ROOT, timeout=30)
    assert result.returncode == 0, f"{default} would show up in `git status`"
