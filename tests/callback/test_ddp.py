"""Two CPU processes under strategy="ddp" (gloo).

The run completes, rank 0 alone writes, training is unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from events import read_events

HERE = os.path.dirname(__file__)


def _run(out_dir, mode, returncode=0, accelerator="cpu"):
    helpers = os.path.dirname(HERE)  # tests/, where lit_models lives
    env = dict(os.environ, PYTHONPATH=helpers + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "ddp_run.py"), str(out_dir), mode, accelerator],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert (done.returncode == 0) == (returncode == 0), done.stderr[-3000:]
    return done


def test_ddp_two_processes(tmp_path):
    _check_two_processes(tmp_path, "cpu")


@pytest.mark.cuda
def test_ddp_two_gpus_under_nccl(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs two CUDA devices for NCCL DDP, found {torch.cuda.device_count()}")
    _check_two_processes(tmp_path / "plain", "gpu")
    _check_measured_set(tmp_path / "measured", "gpu")


def _check_two_processes(tmp_path, accelerator):
    _run(tmp_path / "without", "without", accelerator=accelerator)
    _run(tmp_path / "with", "with", accelerator=accelerator)
    for rank in (0, 1):
        plain = torch.load(tmp_path / "without" / f"weights{rank}.pt", weights_only=True)
        watched = torch.load(tmp_path / "with" / f"weights{rank}.pt", weights_only=True)
        for key in plain:
            assert torch.equal(plain[key], watched[key]), (rank, key)
    # rank 0 computed and wrote the maps when training started and at both validations; rank 1 nothing
    assert (tmp_path / "with" / "history0.txt").read_text() == "3"
    assert (tmp_path / "with" / "history1.txt").read_text() == "0"
    runs = [
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "with" / "logs") for f in fs if "tfevents" in f
    ]
    images, val_loss = [], []
    for path in runs:
        events = read_events(path)
        images += [(tag, e.step) for tag in events.Tags()["images"] for e in events.Images(tag)]
        if "val_loss" in events.Tags()["scalars"]:
            val_loss += [e.step for e in events.Scalars("val_loss")]
    # 16 samples over 2 ranks with batch 2: 4 steps an epoch; logged at val_loss's step, one before
    assert sorted(val_loss) == [3, 7]
    assert sorted(t for t in images if t[0] == "cam/features.3/gradcam") == [
        ("cam/features.3/gradcam", 0),
        ("cam/features.3/gradcam", 3),
        ("cam/features.3/gradcam", 7),
    ]
    # Both ranks hold rank 0's numbers (so EarlyStopping and ModelCheckpoint agree), exactly.
    seen = [json.loads((tmp_path / "with" / f"metrics{rank}.json").read_text()) for rank in (0, 1)]
    assert seen[0] == seen[1]
    assert {"cam_drift/features.3/gradcam/energy_in_mask", "cam_drift/features.3/gradcam/change_prev"} <= set(
        seen[0]
    )
    assert 0.0 <= seen[0]["best"] <= 1.0


def test_ddp_a_setting_that_cannot_work_stops_both_ranks(tmp_path):
    # Rank 0 alone computes the maps; its verdict is broadcast, so rank 1 stops too instead of waiting.
    done = _run(tmp_path, "bad", returncode=1)
    assert "CAMConfigurationError" in done.stderr and "class 99 is out of range" in done.stderr
    assert not list(tmp_path.glob("weights*.pt"))  # neither rank got through training


def test_ddp_measured_set_shared_out_gives_every_rank_one_processs_numbers(tmp_path):
    _check_measured_set(tmp_path, "cpu")


def _check_measured_set(tmp_path, accelerator):
    _run(tmp_path / "one", "measure1", accelerator=accelerator)
    _run(tmp_path / "two", "measure", accelerator=accelerator)
    one = json.loads((tmp_path / "one" / "measured0.json").read_text())["validate"]
    ranks = [json.loads((tmp_path / "two" / f"measured{rank}.json").read_text()) for rank in (0, 1)]
    pair = "cam_drift/features.3/gradcam/"
    assert set(one) == {pair + "energy_in_mask", pair + "pointing_game"}
    for seen in ranks:  # each rank explained 4 of the 8 samples; the means are over all 8, as in one process
        assert seen["validate"].keys() == one.keys()
        for name, value in one.items():
            assert abs(seen["validate"][name] - value) <= 1e-6, name
    # The fit: both ranks log the same numbers, the drift ones included.
    assert ranks[0]["fit"] == ranks[1]["fit"] and pair + "change_prev" in ranks[0]["fit"]


def test_ddp_a_rank_that_fails_its_share_skips_the_validation_on_both(tmp_path):
    _run(tmp_path, "measure_fail")
    seen = [json.loads((tmp_path / f"skipped{rank}.json").read_text()) for rank in (0, 1)]
    assert all(s["steps"] == 8 for s in seen)  # both trained to the end (2 epochs of 4 steps): none hung
    assert all(len(s["skipped"]) == 2 for s in seen)  # both validations skipped on both ranks
    assert "rank 1 cannot read its samples" in seen[1]["skipped"][0]
    assert "another rank failed" in seen[0]["skipped"][0]
