"""The measured set: numbers over many samples, a chunk at a time, shared out over ranks, kept on resume."""

from __future__ import annotations

import random
import types
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lit_models import fresh_run, make_module_class, measured_samples, stand_in_trainer

from cam_callback import CAMEngine, GradCAMCallback, compute_cam
from cam_callback.callback.measure import MeasuredHistory, agree, measured_count, share
from cam_callback.callback.observation import observe
from cam_callback.callback.run import RunState
from cam_callback.callback.trainer import LightningNamespace, TrainerLike

TinyNet: Any = make_module_class(pl)
NAMESPACE = LightningNamespace.of(pl.loggers, pl.strategies)
PAIR = "cam_drift/features.3/gradcam/"
FOCUS = "cam_focus/features.3/gradcam/"


def _trainer(root: Path, step: int) -> TrainerLike:
    return cast(TrainerLike, stand_in_trainer(root, step))


def _run(options: Any) -> RunState:
    return cast(RunState, fresh_run(options))


@pytest.fixture
def forward_sizes(monkeypatch) -> list[int]:
    """The batch size of every engine call from here on."""
    sizes: list[int] = []
    real = CAMEngine.__call__

    def spy(self: CAMEngine, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(inputs))
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(CAMEngine, "__call__", spy)
    return sizes


def _energy(maps: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    return (maps * mask).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))


def test_shares_cover_the_set_once_in_contiguous_blocks():
    assert [share(10, rank, 3) for rank in range(3)] == [range(0, 3), range(3, 6), range(6, 10)]
    assert [share(1, rank, 2) for rank in range(2)] == [range(0, 0), range(0, 1)]
    assert measured_count("all", 8) == 8 and measured_count(5, 8) == 5 and measured_count(50, 8) == 8


def test_one_process_agrees_with_itself_or_raises_its_own_failure():
    trainer = cast(TrainerLike, types.SimpleNamespace())
    agree(trainer, None)
    with pytest.raises(KeyError, match="mine"):
        agree(trainer, KeyError("mine"))


def test_the_numbers_are_means_over_the_measured_set_a_chunk_at_a_time(tmp_path, forward_sizes):
    options = GradCAMCallback(layer="features.3", num_samples=2, measure_samples=6, chunk_size=4).options
    run, model = _run(options), TinyNet()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = (random.getstate(), cast(tuple, np.random.get_state())[1].copy(), torch.get_rng_state())
    with pytest.warns(UserWarning, match="no logger"):
        first = observe(run, options, _trainer(tmp_path, 0), model, "val")
    assert random.getstate() == states[0] and np.array_equal(cast(tuple, np.random.get_state())[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])  # no global RNG moved
    assert forward_sizes == [2, 4, 2]  # the 2 shown samples, then the 6 measured ones in chunks of at most 4
    images, labels = measured_samples(6)
    model.eval()
    before = compute_cam(model, images, "features.3", target=labels)
    assert {name for name in first if name.startswith("cam_drift/")} == {
        PAIR + "energy_in_mask", PAIR + "pointing_game"
    }
    # The focus numbers are the measured set's too: consistency by a leave-one-out correlation per class.
    assert run.measured is not None
    small = run.measured.first[("features.3", "gradcam")].flatten(1).double()
    values = []
    for i in range(6):
        others = [j for j in range(6) if j != i and labels[j] == labels[i]]
        if others:
            pair = torch.stack([small[i], small[others].mean(dim=0)])
            values.append(float(torch.corrcoef(pair)[0, 1]))
    assert first[FOCUS + "consistency"] == pytest.approx(sum(values) / len(values), abs=1e-5)
    assert first[PAIR + "energy_in_mask"] == pytest.approx(float(_energy(before).mean()), abs=1e-6)
    # The model moves; the drift is each measured sample's, averaged over the 6.
    with torch.no_grad():
        model.features[3].weight.add_(0.3 * torch.randn_like(model.features[3].weight))
    second = observe(run, options, _trainer(tmp_path, 4), model, "val")
    run.output.close()
    after = compute_cam(model, images, "features.3", target=labels)
    cosine = torch.nn.functional.cosine_similarity(after.flatten(1), before.flatten(1), dim=1)
    assert second[PAIR + "change_prev"] == pytest.approx(float((1 - cosine).mean()), abs=1e-5)
    assert second[PAIR + "change_first"] == second[PAIR + "change_prev"]
    # The shown set is still the first 2 samples: the summary's frames hold 2 maps each.
    assert run.history.frames()[("features.3", "gradcam")].shape == (2, 2, 16, 16)
    assert run.measured is not None and run.measured.previous[("features.3", "gradcam")].shape == (6, 16, 16)


def test_without_measure_samples_the_numbers_are_the_shown_samples(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=3).options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger"):
        numbers = observe(run, options, _trainer(tmp_path, 0), model, "val")
    run.output.close()
    assert run.measured is None and run.batch is not None and run.batch.labels is not None
    model.eval()
    maps = compute_cam(model, run.batch.inputs, "features.3", target=run.batch.labels)
    assert numbers[PAIR + "energy_in_mask"] == float(_energy(maps).mean())  # exactly: the same rule


def test_the_measured_history_survives_a_resume(tmp_path):
    options = GradCAMCallback(layer="features.3", num_samples=2, measure_samples="all").options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger"):
        observe(run, options, _trainer(tmp_path, 0), model, "val")
    run.output.close()
    state = run.state_dict()
    resumed = _run(options)
    resumed.load_state_dict(state)
    assert resumed.measured is not None and resumed.measured.recorded == 1
    key = ("features.3", "gradcam")
    assert resumed.measured.first[key].shape == (8, 16, 16)  # "all": the 8 validation samples
    assert torch.equal(resumed.measured.first[key], cast(MeasuredHistory, run.measured).first[key])
    with pytest.warns(UserWarning, match="no logger"):
        again = observe(resumed, options, _trainer(tmp_path / "b", 5), model, "val")
    resumed.output.close()
    assert again[PAIR + "change_first"] == pytest.approx(0.0, abs=1e-6)  # the same model as the saved maps


def test_a_measured_sample_with_a_nan_map_is_left_out_of_the_numbers(tmp_path, monkeypatch):
    from cam_callback.callback import measure

    real = measure.take_samples

    def poisoned(loader: Any, indices: range, keys: Any = (None, None, None)) -> Any:
        batch = real(loader, indices, keys)
        if 1 in indices:  # sample 1's image is NaN: its output, so its maps, are NaN
            batch.inputs[indices.index(1)] = float("nan")
        return batch

    monkeypatch.setattr(measure, "take_samples", poisoned)
    options = GradCAMCallback(layer="features.3", num_samples=2, measure_samples=4).options
    run, model = _run(options), TinyNet()
    with pytest.warns(UserWarning, match="no logger"), pytest.warns(UserWarning, match="NaN"):
        first = observe(run, options, _trainer(tmp_path, 0), model, "val")
        second = observe(run, options, _trainer(tmp_path, 3), model, "val")
    run.output.close()
    images, labels = measured_samples(4)
    kept = [0, 2, 3]
    model.eval()
    maps = compute_cam(model, images[kept], "features.3", target=labels[kept])
    assert first[PAIR + "energy_in_mask"] == pytest.approx(float(_energy(maps).mean()), abs=1e-6)
    assert second[PAIR + "change_prev"] == pytest.approx(0.0, abs=1e-6)  # the same model, NaN left out
    assert run.measured is not None
    assert bool(run.measured.previous[("features.3", "gradcam")][1].isnan().all())  # kept NaN, never zero


class _OtherRankOk:
    """A strategy seen from rank 1 of 2, whose rank 0 reports success and (sharded) gathers nothing."""

    root_device = torch.device("cpu")

    def __init__(self) -> None:
        self.gathered: list[torch.Tensor] = []

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        self.gathered.append(tensor)
        return torch.stack([torch.zeros_like(tensor), tensor])


def test_under_a_sharded_strategy_every_rank_explains_every_sample(tmp_path, forward_sizes):
    options = GradCAMCallback(layer="features.3", num_samples=2, measure_samples=6, chunk_size=4).options
    model = TinyNet()
    with pytest.warns(UserWarning, match="no logger"):
        alone = observe(_run(options), options, _trainer(tmp_path / "alone", 0), model, "val")
    forward_sizes.clear()
    trainer = cast(Any, _trainer(tmp_path / "rank1", 0))
    trainer.is_global_zero, trainer.world_size, trainer.global_rank = False, 2, 1
    trainer.strategy = strategy = _OtherRankOk()
    run = _run(options)
    numbers = observe(run, options, trainer, model, "val", show=True, sharded=True)
    assert forward_sizes == [2, 4, 2]  # the shown batch's forward, then all 6 measured samples: every forward
    assert len(strategy.gathered) == 1 and strategy.gathered[0].shape == (1,)  # the agreement alone
    assert numbers == alone and not (tmp_path / "rank1" / "cam_logs").exists()  # rank 1 writes nothing
