"""The drift numbers are Lightning metrics: EarlyStopping and ModelCheckpoint monitor them; values by hand."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from lit_models import DictData, loaders, make_module_class
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from cam_callback import GradCAMCallback, compute_cam

TinyNet = make_module_class(pl)
ENERGY = "cam_drift/features.3/gradcam/energy_in_mask"
QUIET: dict[str, Any] = dict(
    enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, logger=False
)


class Recorder(pl.Callback):
    """After each validation (and after the CAM callback), what Lightning offers to monitor."""

    def __init__(self):
        self.seen = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.seen.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def _fit(tmp_path, callbacks, max_epochs=2, cam=True):
    pl.seed_everything(7, verbose=False)
    model = TinyNet()
    extra = [GradCAMCallback(layer="features.3", num_samples=4)] if cam else []
    trainer = pl.Trainer(
        max_epochs=max_epochs, callbacks=extra + callbacks, default_root_dir=str(tmp_path),
        deterministic=True, **QUIET,
    )
    trainer.fit(model, *loaders(dict_batches=True))
    return model, trainer


def test_numbers_are_callback_and_logged_metrics_with_the_value_worked_out_by_hand(tmp_path):
    recorder = Recorder()
    model, trainer = _fit(tmp_path, [recorder], cam=True)
    assert ENERGY in trainer.callback_metrics and ENERGY in trainer.logged_metrics
    assert "cam_drift/features.3/gradcam/change_prev" in trainer.callback_metrics  # from the 2nd validation
    # The last validation saw the final weights; the fixed batch is the first 4 validation samples.
    batch = trainer.callbacks[0].fixed_batch
    labels = torch.stack([DictData(8, 2)[i]["label"] for i in range(4)])
    model.eval()
    maps = compute_cam(model, batch.inputs, "features.3", target=batch.labels)
    assert torch.equal(batch.labels, labels)
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    expected = ((maps * mask).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))).mean()
    assert float(trainer.callback_metrics[ENERGY]) == pytest.approx(float(expected), abs=1e-6)
    assert recorder.seen[-1][ENERGY] == pytest.approx(float(expected), abs=1e-6)


def test_early_stopping_monitors_a_drift_number(tmp_path):
    # An improvement of 2 is impossible for a share in [0, 1]: it stops after the second validation.
    stopper = EarlyStopping(monitor=ENERGY, mode="max", patience=0, min_delta=2.0)
    _, trainer = _fit(tmp_path, [stopper], max_epochs=5)
    assert stopper.stopped_epoch == 1
    assert trainer.current_epoch == 2  # two epochs ran, not five


def test_model_checkpoint_keeps_the_validation_where_the_maps_are_most_on_the_objects(tmp_path):
    recorder = Recorder()
    keeper = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), monitor=ENERGY, mode="max", save_top_k=1,
                             filename="{epoch}")
    _fit(tmp_path, [recorder, keeper], max_epochs=3)
    energies = [seen[ENERGY] for seen in recorder.seen]
    assert len(energies) == 3
    best = max(range(3), key=energies.__getitem__)
    assert keeper.best_model_score is not None
    assert float(keeper.best_model_score) == pytest.approx(energies[best])
    assert os.path.basename(keeper.best_model_path) == f"epoch={best}.ckpt"


def test_the_users_own_monitors_decide_as_without_the_callback(tmp_path):
    def run(folder, cam):
        stopper = EarlyStopping(monitor="val_loss", patience=1)
        keeper = ModelCheckpoint(dirpath=str(folder), monitor="val_loss", save_top_k=2, filename="{epoch}")
        _, trainer = _fit(folder, [stopper, keeper], max_epochs=6, cam=cam)
        saved = sorted(f for f in os.listdir(folder) if f.endswith(".ckpt"))
        return stopper.stopped_epoch, trainer.current_epoch, saved, keeper.best_model_score

    without, with_cam = run(tmp_path / "a", False), run(tmp_path / "b", True)
    assert without[:3] == with_cam[:3]
    assert torch.equal(without[3], with_cam[3])


def test_showing_tiles_enlarged_changes_no_number_and_no_stored_map(tmp_path):
    def run(folder, size):
        pl.seed_everything(7, verbose=False)
        callback = GradCAMCallback(layer="features.3", num_samples=4, min_display_size=size)
        trainer = pl.Trainer(max_epochs=2, callbacks=[callback], default_root_dir=str(folder), **QUIET)
        trainer.fit(TinyNet(), *loaders(dict_batches=True))
        numbers = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("cam_drift/")}
        return numbers, callback.history.frames()

    plain, enlarged = run(tmp_path / "a", 0), run(tmp_path / "b", 128)
    assert plain[0] == enlarged[0] and len(plain[0]) == 6
    assert all(torch.equal(plain[1][key], enlarged[1][key]) for key in plain[1])


def test_the_names_to_monitor_are_said_once_at_the_first_validation(tmp_path, caplog):
    with caplog.at_level("INFO"):
        _, trainer = _fit(tmp_path, [], max_epochs=2)
    said = [r.getMessage() for r in caplog.records if "each validation logs the numbers" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]  # once, on one line
    numbers = sorted(k for k in trainer.callback_metrics if k.startswith("cam_drift/"))
    names = [n.rsplit("/", 1)[1] for n in numbers]
    expected = "{" + ",".join(sorted(names)) + "}"
    head, _, rest = said[0].partition("cam_drift/<layer>/<method>/")
    listed, _, pairs = rest.partition(" for <layer>/<method> in ")
    assert "{" + ",".join(sorted(listed.strip("{}").split(","))) + "}" == expected
    assert pairs == "features.3/gradcam"
    assert head == "GradCAMCallback: each validation logs the numbers "
