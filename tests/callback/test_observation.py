"""One observation on a stand-in Trainer: the maps recorded, the images written, the numbers by hand."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import pytorch_lightning as pl
import torch
from lit_models import DictData, fresh_run, make_module_class, stand_in_trainer
from pytorch_lightning.plugins.precision import Precision

from cam_callback import GradCAMCallback, compute_cam
from cam_callback.callback.observation import frame_step, observe
from cam_callback.callback.run import RunState
from cam_callback.callback.trainer import LightningNamespace, TrainerLike

TinyNet: Any = make_module_class(pl)
NAMESPACE = LightningNamespace.of(pl.loggers, pl.strategies)
ENERGY = "cam_drift/features.3/gradcam/energy_in_mask"


def _trainer(root: Path, step: int, rank_zero: bool = True, epoch: int = 0) -> TrainerLike:
    return cast(TrainerLike, stand_in_trainer(root, step, rank_zero, epoch))


def _run(options: Any) -> RunState:
    return cast(RunState, fresh_run(options))


def test_an_observation_records_writes_and_returns_the_numbers(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=4).options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger: writing the images as PNG files"):
        first = observe(run, options, _trainer(tmp_path, 0), model, "val")
    second = observe(run, options, _trainer(tmp_path, 6), model, "val")
    run.output.close()
    # The fixed batch: the first 4 validation samples; the target their labels.
    batch = run.batch
    assert batch is not None and batch.labels is not None and run.task == "classification"
    data = DictData(8, 2)
    assert torch.equal(batch.labels, torch.stack([data[i]["label"] for i in range(4)]))
    model.eval()
    maps = compute_cam(model, batch.inputs, "features.3", target=batch.labels)
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    energy = float(((maps * mask).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))).mean())
    focus = {f"cam_focus/features.3/gradcam/{n}" for n in ("concentration", "border_share", "consistency")}
    assert set(first) == {ENERGY, "cam_drift/features.3/gradcam/pointing_game"} | focus
    assert first[ENERGY] == pytest.approx(energy, abs=1e-6)
    # The focus numbers of the 16 x 16 maps (kept at that size), worked out here in a few lines.
    p = maps.flatten(1) / maps.flatten(1).sum(dim=1, keepdim=True)
    peaked = 1 - (-(p * torch.log(p.clamp(min=1e-30))).sum(dim=1) / math.log(256))
    band = torch.ones(16, 16)
    band[2:14, 2:14] = 0  # round(0.1 * 16) = 2 pixels from each edge
    border = (maps * band).sum(dim=(1, 2)) / maps.sum(dim=(1, 2)) / (band.mean())
    alike = []
    for i in range(4):  # each map against the mean of its class's other maps (a class of one does not count)
        others = [j for j in range(4) if j != i and batch.labels[j] == batch.labels[i]]
        if others:
            pair = torch.stack([maps[i].flatten(), maps[others].mean(dim=0).flatten()]).double()
            alike.append(torch.corrcoef(pair)[0, 1].float())
    focus_of = "cam_focus/features.3/gradcam/{}".format
    assert first[focus_of("concentration")] == pytest.approx(float(peaked.mean()), abs=1e-5)
    assert first[focus_of("border_share")] == pytest.approx(float(border.mean()), abs=1e-5)
    assert first[focus_of("consistency")] == pytest.approx(float(torch.stack(alike).mean()), abs=1e-5)
    assert run.focus["features.3", "gradcam"]["border_share"] == pytest.approx(float(border.mean()), abs=1e-5)
    # The same model again: nothing moved.
    assert second["cam_drift/features.3/gradcam/change_prev"] == pytest.approx(0.0, abs=1e-6)
    assert second["cam_drift/features.3/gradcam/shift_first"] == pytest.approx(0.0, abs=1e-4)
    assert run.history.steps("features.3", "gradcam") == [0, 6]
    folder = tmp_path / "cam_logs" / "version_0"
    overlays = sorted(p.name for p in (folder / "cam" / "features.3" / "gradcam").iterdir())
    assert overlays == ["step_00000000.png", "step_00000006.png"]
    rows = (folder / "scalars.csv").read_text().splitlines()
    assert rows[0] == "tag,step,value" and len(rows) == 1 + len(first) + len(second)


def test_off_rank_zero_the_maps_are_computed_but_nothing_is_kept_or_sent(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=2).options
    run = _run(options)
    assert observe(run, options, _trainer(tmp_path, 0, rank_zero=False), TinyNet(), "val") == {}
    assert run.batch is not None and run.history.recorded == 0
    run.output.close()
    assert not (tmp_path / "cam_logs").exists()


def test_a_resumed_runs_check_draws_but_keeps_nothing(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=2).options
    run = _run(options)
    assert observe(run, options, _trainer(tmp_path, 0), TinyNet(), "val", keep=False) == {}
    run.output.close()
    assert run.history.recorded == 0 and not (tmp_path / "cam_logs").exists()


def test_the_images_are_drawn_by_the_writer_thread_the_first_maps_on_the_calling_one(tmp_path, monkeypatch):
    from cam_callback.callback import observation

    threads: list[str] = []
    real = observation.draw_records

    def draw(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        drawing = args[0]
        tensors = [*drawing.maps.values(), drawing.batch.inputs, drawing.result.outputs]
        assert all(t.device.type == "cpu" for t in tensors) and drawing.result.raw == {}
        return real(*args, **kwargs)

    monkeypatch.setattr(observation, "draw_records", draw)
    options = GradCAMCallback(layer="features.3", num_samples=2).options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger"):
        observe(run, options, _trainer(tmp_path, 0), model, "val", draw_now=True)
    observe(run, options, _trainer(tmp_path, 3), model, "val")
    run.output.close()
    assert threads == [threading.current_thread().name, "cam_callback-writer"]
    folder = tmp_path / "cam_logs" / "version_0" / "cam" / "features.3" / "gradcam"
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000000.png", "step_00000003.png"]


MIXED_TOLERANCE = {"16-mixed": (0.1, 0.01), "bf16-mixed": (0.1, 0.01)}
"""Largest and mean absolute difference of the normalised maps from float32's (maps in [0, 1]). bfloat16
keeps 8 bits of mantissa: on the CPU the same model's maps differ from float32's by at most 0.034 (mean
0.0024) over five seeds; float16 keeps 11."""


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_cuda_mixed_precision_maps_are_finite_and_near_float32s(tmp_path, precision):
    from conftest import fill_deterministic
    from pytorch_lightning.plugins.precision import MixedPrecision

    options = GradCAMCallback(layer="features.3", num_samples=8, target="label").options
    model = fill_deterministic(TinyNet()).cuda()
    frames = {}
    for name, plugin in (("32-true", Precision()), (precision, MixedPrecision(precision, "cuda"))):
        trainer = _trainer(tmp_path / name, 0)
        cast(Any, trainer).precision_plugin = plugin
        run = _run(options)
        with pytest.warns(UserWarning, match="no logger"):
            observe(run, options, trainer, model, "val")
        run.output.close()
        frames[name] = run.history.frames()[("features.3", "gradcam")][-1]
    mixed, full = frames[precision], frames["32-true"]
    largest, mean = MIXED_TOLERANCE[precision]
    assert bool(torch.isfinite(mixed).all()) and float(full.amax()) > 0
    difference = (mixed - full).abs()
    assert float(difference.amax()) <= largest and float(difference.mean()) <= mean


@pytest.mark.parametrize(
    ("step", "last", "expected"), [(5, None, 5), (5, 0, 5), (0, 0, 1), (1, 1, 2), (3, 7, 8)]
)
def test_a_frame_goes_after_the_last_frame_when_its_step_is_taken(step, last, expected):
    assert frame_step(step, last) == expected


def test_two_observations_at_one_step_get_two_steps_and_their_epochs(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=2).options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger"):
        observe(run, options, _trainer(tmp_path, 0), model, "val", epoch=-1)  # when training starts
    observe(run, options, _trainer(tmp_path, 0, epoch=0), model, "val")  # after one training batch
    observe(run, options, _trainer(tmp_path, 1, epoch=1), model, "val")
    run.output.close()
    assert run.history.steps("features.3", "gradcam") == [0, 1, 2]
    assert run.history.epochs("features.3", "gradcam") == [-1, 0, 1]
    folder = tmp_path / "cam_logs" / "version_0" / "cam" / "features.3" / "gradcam"
    overlays = sorted(p.name for p in folder.iterdir())
    assert overlays == ["step_00000000.png", "step_00000001.png", "step_00000002.png"]
