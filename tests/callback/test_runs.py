"""One callback over several runs, long runs, where files go: each run its own samples, history, folder."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from lit_models import loaders, make_module_class, tiny_data
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader

from cam_callback import GradCAMCallback
from cam_callback.callback.history import MAX_FRAMES, kept_ordinals
from cam_callback.callback.publishing import SUMMARY_TILE_SIDE

TinyNet: Any = make_module_class(pl)
QUIET: dict[str, Any] = dict(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
KEY = ("features.3", "gradcam")




def _trainer(tmp_path, callback, name="run", **kwargs):
    logger = kwargs.pop("logger", None)
    return pl.Trainer(
        max_epochs=kwargs.pop("max_epochs", 1), callbacks=[callback], deterministic=True,
        logger=TensorBoardLogger(str(tmp_path), name=name) if logger is None else logger,
        enable_checkpointing=False, default_root_dir=str(tmp_path), **QUIET, **kwargs,
    )


def _first(loader: DataLoader, count: int) -> torch.Tensor:
    return torch.stack([loader.dataset[i][0] for i in range(count)])


# A reused instance (a notebook, a sweep) --------------------------------------------------------------------


def test_a_second_fit_with_the_same_callback_starts_from_its_own_data(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    train, val_a = loaders()
    _trainer(tmp_path, callback, "a").fit(TinyNet(), train, val_a)
    val_b = DataLoader(tiny_data(8, seed=5), batch_size=2)
    second = _trainer(tmp_path, callback, "b", max_epochs=2)
    second.fit(TinyNet(), train, val_b)
    # It used to explain the first fit's images, compare with its maps and mix both in the summary.
    assert callback.fixed_batch is not None
    assert torch.equal(callback.fixed_batch.inputs.cpu(), _first(val_b, 4))
    events = read_events(second.logger.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert val_steps == [5, 11]
    assert callback.history.steps(*KEY) == [0, *val_steps] and callback.history.recorded == 3
    first = {e.step: e.value for e in events.Scalars("cam_drift/features.3/gradcam/change_first")}
    previous = {e.step: e.value for e in events.Scalars("cam_drift/features.3/gradcam/change_prev")}
    assert sorted(first) == sorted(previous) == val_steps
    assert first[5] == pytest.approx(previous[5])  # both against this fit's step-0 maps
    (summary,) = events.Images("cam_summary/features.3/gradcam")
    assert summary.width == 2 + 4 * (SUMMARY_TILE_SIDE + 2)  # images + this fit's 3 frames


def test_validate_after_fit_explains_the_validate_data(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    train, val_a = loaders()
    trainer = _trainer(tmp_path, callback)
    model = TinyNet()
    trainer.fit(model, train, val_a)
    val_b = DataLoader(tiny_data(8, seed=5), batch_size=2)
    trainer.validate(model, val_b)
    assert callback.fixed_batch is not None
    assert torch.equal(callback.fixed_batch.inputs.cpu(), _first(val_b, 4))  # not val_a's
    assert callback.history.recorded == 1  # validate's own history


# Long runs: the history and the summary stay bounded -------------------------------------------------------


def test_many_validations_keep_at_most_max_frames_and_a_summary_of_bounded_size(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    train, val = loaders()
    trainer = _trainer(tmp_path, callback, max_epochs=5, val_check_interval=1, limit_val_batches=1)
    trainer.fit(TinyNet(), train, val)
    recorded = 1 + 5 * 6  # the step-0 frame, then a validation after every one of 30 steps
    assert callback.history.recorded == recorded
    kept = kept_ordinals(recorded)
    # Lightning logs the validation after step k + 1 at step k, so the first one falls on the step-0
    # frame's step 0: its frame, and so every later one, goes one step after the frame before it.
    val_steps = [e.step for e in read_events(trainer.logger.log_dir).Scalars("val_loss")]
    assert val_steps == list(range(30))
    steps = [0, *(step + 1 for step in val_steps)]  # the step of each recording, by ordinal
    assert callback.history.steps(*KEY) == [steps[k] for k in kept]
    assert len(callback.history) == len(kept) <= MAX_FRAMES
    state = callback.state_dict()["history"]
    assert state["maps"]["features.3::gradcam"].shape == (len(kept), 2, 16, 16)
    (summary,) = read_events(trainer.logger.log_dir).Images("cam_summary/features.3/gradcam")
    assert summary.width == 2 + (1 + len(kept)) * (SUMMARY_TILE_SIDE + 2)
    assert summary.height == 2 + 2 * (SUMMARY_TILE_SIDE + 2)


# Where files go ------------------------------------------------------------------------------------------


def test_logger_false_writes_under_default_root_dirs_run_folder(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    root = tmp_path / "root"
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    train, val = loaders()
    for version in (0, 1):  # each run its own folder, as Lightning numbers its loggers' runs
        said = f"no logger: writing the images as PNG files under .*cam_logs.version_{version}"
        with pytest.warns(UserWarning, match=said):
            _trainer(root, callback, logger=False).fit(TinyNet(), train, val)
        run = root / "cam_logs" / f"version_{version}"
        # the step-0 frame, then the validation after 6 steps, at Lightning's step for it (5)
        assert sorted(os.listdir(run / "cam" / "features.3" / "gradcam")) == [
            "step_00000000.png", "step_00000005.png"
        ]
        assert (run / "cam_summary_features.3_gradcam.png").is_file()
        assert (run / "scalars.csv").is_file()  # no logger takes the numbers: they are written here
    assert not (root / "lightning_logs").exists()
    assert not os.listdir(tmp_path / "cwd")  # it used to write into the working directory


def test_fast_dev_run_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    train, val = loaders()
    trainer = pl.Trainer(fast_dev_run=True, callbacks=[callback], default_root_dir=str(tmp_path), **QUIET)
    with pytest.warns(UserWarning, match="fast_dev_run: the maps are computed and checked, but no file"):
        trainer.fit(TinyNet(), train, val)
    # computed all the same: the step-0 frame, and the validation after the one batch, which Lightning
    # logs at step 0 (global_step - 1), where the step-0 frame is: its frame goes to step 1
    assert callback.history.steps(*KEY) == [0, 1]
    assert callback.history.recorded == 2
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_summary_that_cannot_be_written_warns(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    logger = TensorBoardLogger(str(tmp_path), name="run", version=0)
    blocked = tmp_path / "run" / "version_0" / "cam_summary_features.3_gradcam.png"
    blocked.mkdir(parents=True)  # a folder where the file should go: the write fails
    train, val = loaders()
    # The summary is written by the background writer, whose failure is reported when it is drained.
    with pytest.warns(RuntimeWarning, match="skipped writing some maps .*IsADirectoryError"):
        _trainer(tmp_path, callback, logger=logger).fit(TinyNet(), train, val)
    # TensorBoard has it
    assert "cam_summary/features.3/gradcam" in read_events(logger.log_dir).Tags()["images"]


# What the data and the options say ------------------------------------------------------------------------


def test_more_samples_asked_than_the_data_has_is_said_once(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=50)
    train, val = loaders()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(tmp_path, callback, max_epochs=2).fit(TinyNet(), train, val)
    said = [w for w in caught if "`num_samples` is 50" in str(w.message)]
    assert len(said) == 1
    assert "the validation data has only 8 samples: explaining those 8" in str(said[0].message)
    assert callback.fixed_batch is not None
    assert len(callback.fixed_batch.inputs) == 8


def test_a_single_mean_and_std_serve_every_channel(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2, mean=0.5, std=0.2)
    assert (callback.options.display.mean, callback.options.display.std) == ((0.5,), (0.2,))
    train, val = loaders()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing skipped
        _trainer(tmp_path, callback).fit(TinyNet(), train, val)
    assert callback.history.recorded == 2


class Regression(TinyNet):
    """One output, fitted to float targets."""

    def __init__(self) -> None:
        super().__init__()
        self.head[-1] = nn.Linear(8, 1)

    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.mse_loss(self(x)[:, 0], y)

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x)[:, 0], y))


def _float_labels(n, seed):
    data = tiny_data(n, seed)
    return torch.utils.data.TensorDataset(data.tensors[0], data.tensors[1].float() / 3)


def test_regression_with_float_labels_explains_the_output_by_default(tmp_path):
    # It used to fail at every validation with "`target` classes must be integers" (no `target` was set).
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    train = DataLoader(_float_labels(12, 1), batch_size=2)
    val = DataLoader(_float_labels(8, 2), batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no validation is skipped, and nothing warns of it
        trainer = _trainer(tmp_path, callback)
        trainer.fit(Regression(), train, val)
    assert callback.history.recorded == 2
    assert "cam/features.3/gradcam" in read_events(trainer.logger.log_dir).Tags()["images"]
