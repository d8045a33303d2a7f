"""GradCAMCallback on a real tiny Trainer: what it logs, when, and that training is untouched bit for bit."""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import warnings
from typing import Any, cast

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from lit_models import DictData, SpatialMean, loaders, make_module_class, measured_samples, tiny_data
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from cam_callback import CAMConfigurationError, CAMEngine, GradCAMCallback, compute_cam
from cam_callback.callback import core
from cam_callback.callback.tasks import default_target, task_of
from cam_callback.core.options import CAMOptions

TinyNet: Any = make_module_class(pl)

QUIET: dict[str, Any] = dict(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)




def _fit(tmp_path, callbacks, *, dict_batches=False, logger=True, **kwargs):
    pl.seed_everything(7, verbose=False)
    model = TinyNet()
    train, val = loaders(dict_batches=dict_batches)
    trainer_logger = TensorBoardLogger(str(tmp_path), name="run") if logger is True else logger
    trainer = pl.Trainer(
        max_epochs=kwargs.pop("max_epochs", 2),
        callbacks=callbacks,
        logger=trainer_logger,
        deterministic=True,
        default_root_dir=str(tmp_path),
        enable_checkpointing=kwargs.pop("enable_checkpointing", False),
        **QUIET,
        **kwargs,
    )
    trainer.fit(model, train, val)
    return model, trainer


def _snapshot(model, trainer):
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": trainer.optimizers[0].state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": cast(tuple, np.random.get_state())[1].copy(),
    }


def _assert_same_training(a, b):
    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            other = b["optimizer"]["state"][pid][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (pid, name)
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert a["python_rng"] == b["python_rng"]
    assert np.array_equal(a["numpy_rng"], b["numpy_rng"])


class Probe(pl.Callback):
    """Checks, around the CAM callback, that gradients, modes and hook tables are as training left them.

    Exactly as left, not merely close.
    """

    def __init__(self):
        self.checked = 0

    saw_partial_accumulation = False

    def on_validation_start(self, trainer, pl_module):
        self.grads = [None if p.grad is None else p.grad.clone() for p in pl_module.parameters()]
        self.saw_partial_accumulation |= any(g is not None for g in self.grads)
        self.modes = [m.training for m in pl_module.modules()]

    def on_validation_end(self, trainer, pl_module):  # runs after the CAM callback (listed after it)
        for before, p in zip(self.grads, pl_module.parameters(), strict=True):
            assert (before is None) == (p.grad is None)
            if before is not None:
                assert torch.equal(before, p.grad)
        assert self.modes == [m.training for m in pl_module.modules()]
        self._no_hooks(pl_module)
        self.checked += not trainer.sanity_checking

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._no_hooks(pl_module)

    @staticmethod
    def _no_hooks(module):
        for m in module.modules():
            assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(accumulate_grad_batches=2, val_check_interval=0.5),
        dict(precision="bf16-mixed"),
    ],
    ids=["plain", "accumulate+mid-epoch-val", "bf16-mixed"],
)
def test_training_is_bit_for_bit_the_same(tmp_path, settings):
    plain = _snapshot(*_fit(tmp_path / "without", [], dict_batches=True, **settings))
    probe = Probe()
    callback = GradCAMCallback(layer="features.3", method=["gradcam", "layercam"], num_samples=4)
    model, trainer = _fit(tmp_path / "with", [callback, probe], dict_batches=True, **settings)
    _assert_same_training(plain, _snapshot(model, trainer))
    assert probe.checked >= 2
    # The maps were really computed at every validation, and once when training started (the step-0 frame).
    assert callback.history.recorded == probe.checked + 1


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])
def test_training_on_cuda_is_bit_for_bit_the_same(tmp_path, monkeypatch, precision):
    def deterministic_net() -> Any:
        model = make_module_class(pl)()
        model.head[0] = SpatialMean()
        return model

    monkeypatch.setitem(globals(), "TinyNet", deterministic_net)  # what _fit builds
    settings = dict(accelerator="gpu", devices=1, precision=precision)
    without = _fit(tmp_path / "without", [], dict_batches=True, **settings)
    plain = {**_snapshot(*without), "cuda_rng": torch.cuda.get_rng_state()}
    probe = Probe()
    callback = GradCAMCallback(layer="features.3", method=["gradcam", "layercam"], num_samples=4)
    model, trainer = _fit(tmp_path / "with", [callback, probe], dict_batches=True, **settings)
    watched = {**_snapshot(model, trainer), "cuda_rng": torch.cuda.get_rng_state()}
    assert next(model.parameters()).device.type == "cuda"
    _assert_same_training(plain, watched)
    assert torch.equal(plain["cuda_rng"], watched["cuda_rng"])
    assert probe.checked >= 2 and callback.history.recorded == probe.checked + 1


def test_training_is_bit_for_bit_the_same_with_the_second_pass_methods(tmp_path):
    # Shapley-CAM's double backward, Finer-CAM's second backward and FullGrad's own pass with hooks on every
    # convolution and BatchNorm, given in pytorch-grad-cam's spelling where it differs.
    plain = _snapshot(*_fit(tmp_path / "without", [], dict_batches=True))
    probe = Probe()
    methods = ["GradCAMElementWise", "eigengradcam", "KPCA_CAM", "shapleycam", "finercam", "fullgrad"]
    callback = GradCAMCallback(layer="features.3", method=methods, num_samples=4)
    model, trainer = _fit(tmp_path / "with", [callback, probe], dict_batches=True)
    _assert_same_training(plain, _snapshot(model, trainer))
    assert probe.checked >= 2
    names = ["gradcam-elementwise", "eigengradcam", "kpcacam", "shapleycam", "finercam", "fullgrad"]
    assert callback.options.methods == tuple(names)
    images = set(read_events(trainer.logger.log_dir).Tags()["images"])
    assert {f"cam/features.3/{name}" for name in names} <= images


def test_mid_epoch_validation_keeps_a_half_done_accumulation(tmp_path):
    # 6 batches, validation after batch 3 of each epoch: the accumulation of 2 is half done there.
    probe = Probe()
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    model, trainer = _fit(tmp_path, [callback, probe], accumulate_grad_batches=2, val_check_interval=0.5)
    assert probe.checked == 4
    assert probe.saw_partial_accumulation


def test_logs_overlays_heatmaps_and_drift_at_each_validation_step(tmp_path):
    callback = GradCAMCallback(layer="features.3", method=["gradcam", "eigencam"], num_samples=4)
    _, trainer = _fit(tmp_path, [callback], dict_batches=True, val_check_interval=0.5)
    events = read_events(trainer.logger.log_dir)
    images = set(events.Tags()["images"])
    # The step-0 frame when training starts, then 12 samples / 2 = 6 steps an epoch, validation every 3 steps,
    # logged (as val_loss is) one step before the optimizer step that ends the third batch: the images share
    # the step of Lightning's own metrics. The step-0 frame's numbers go to the logger at step 0 (Lightning
    # has no validation to join them to); the changes need an earlier frame, so they start after it.
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert val_steps == [2, 5, 8, 11]
    expected_steps = [0, *val_steps]
    for method in ("gradcam", "eigencam"):
        assert f"cam/features.3/{method}" in images
        assert f"cam_heatmap/features.3/{method}" in images
        assert [e.step for e in events.Images(f"cam/features.3/{method}")] == expected_steps
        drift = {t for t in events.Tags()["scalars"] if t.startswith(f"cam_drift/features.3/{method}/")}
        assert {f"cam_drift/features.3/{method}/{n}" for n in ("change_prev", "energy_in_mask")} <= drift
        energy = [e.step for e in events.Scalars(f"cam_drift/features.3/{method}/energy_in_mask")]
        assert energy == [0, *val_steps]
        change = [e.step for e in events.Scalars(f"cam_drift/features.3/{method}/change_prev")]
        assert change == val_steps
        # The live timeline at every step: one more column each time (the images, then one per frame).
        timeline = events.Images(f"cam_timeline/features.3/{method}")
        assert [e.step for e in timeline] == expected_steps
        widths = [e.width for e in timeline]
        assert all(b - a == widths[1] - widths[0] > 0 for a, b in itertools.pairwise(widths))
        # The focus numbers beside them, and the step-0 frame's too (written to the logger directly).
        for name in ("concentration", "border_share", "consistency"):
            focus = [e.step for e in events.Scalars(f"cam_focus/features.3/{method}/{name}")]
            assert focus == expected_steps
    assert not any("epoch" in tag for tag in images)
    summary = events.Images("cam_summary/features.3/gradcam")
    assert len(summary) == 1
    assert os.path.exists(os.path.join(trainer.logger.log_dir, "cam_summary_features.3_gradcam.png"))


def test_the_measured_sets_numbers_are_logged_at_step_0_and_each_validation(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2, measure_samples=6)
    _, trainer = _fit(tmp_path, [callback], dict_batches=True, max_epochs=1)
    events = read_events(trainer.logger.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]
    energy = events.Scalars("cam_drift/features.3/gradcam/energy_in_mask")
    assert [e.step for e in energy] == [0, *val_steps]
    # The step-0 value: the untrained model's maps of the 6 measured samples (their mean energy in the mask).
    pl.seed_everything(7, verbose=False)
    initial = TinyNet().eval()
    images, labels = measured_samples(6)
    maps = compute_cam(initial, images, "features.3", target=labels)
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    expected = float(((maps * mask).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))).mean())
    assert energy[0].value == pytest.approx(expected, abs=1e-5)
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, *val_steps]  # frames too


def test_image_grid_has_one_tile_per_sample(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4, log_heatmaps=False, min_display_size=0)
    _, trainer = _fit(tmp_path, [callback], max_epochs=1)
    events = read_events(trainer.logger.log_dir)
    image = events.Images("cam/features.3/gradcam")[0]
    # 4 tiles of 16x16 in a 2x2 grid with 2 pixels of padding: 2 * (16 + 2) + 2 = 38
    assert (image.width, image.height) == (38, 38)
    assert "cam_heatmap/features.3/gradcam" not in events.Tags()["images"]


class TeamTensorBoardLogger(TensorBoardLogger):
    """A user's own TensorBoard logger: a subclass must be written to like the original."""


def test_a_tensorboard_logger_subclass_gets_the_images(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    logger = TeamTensorBoardLogger(str(tmp_path), name="run")
    _, trainer = _fit(tmp_path, [callback], logger=logger, max_epochs=1)
    assert "cam/features.3/gradcam" in read_events(logger.log_dir).Tags()["images"]
    assert not list(tmp_path.rglob("step_*.png"))  # no PNG-file fallback


JPEG_START, PNG_START = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_overlays_are_encoded_as_asked_and_heatmaps_stay_lossless(tmp_path, image_format):
    options: dict[str, Any] = {} if image_format == "jpeg" else {"image_format": "png"}  # JPEG is the default
    callback = GradCAMCallback(layer="features.3", num_samples=4, **options)
    _, trainer = _fit(tmp_path, [callback], max_epochs=1)
    events = read_events(trainer.logger.log_dir)
    overlay = events.Images("cam/features.3/gradcam")[0]
    assert overlay.encoded_image_string.startswith(JPEG_START if image_format == "jpeg" else PNG_START)
    assert (overlay.width, overlay.height) == (262, 262)  # 16-px tiles shown 8 x as 128 px: 2 * 130 + 2
    assert events.Images("cam_heatmap/features.3/gradcam")[0].encoded_image_string.startswith(PNG_START)
    assert events.Images("cam_summary/features.3/gradcam")[0].encoded_image_string.startswith(PNG_START)


def test_not_run_in_sanity_check_and_every_n_epochs(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2, every_n_epochs=2)
    _, trainer = _fit(tmp_path, [callback], max_epochs=4, num_sanity_val_steps=2)
    steps = [e.step for e in read_events(trainer.logger.log_dir).Images("cam/features.3/gradcam")]
    # When training starts, then after epochs 1 and 3 (6 steps each; val_loss's step); none in sanity checks.
    assert steps == [0, 11, 23]


def test_every_n_epochs_follows_lightnings_check_val_every_n_epoch(tmp_path):
    # Lightning validates after epochs 1 and 3 here; the callback with the same n must run at both (and once
    # when training starts: the sanity check has loaded the validation data by then).
    callback = GradCAMCallback(layer="features.3", num_samples=2, every_n_epochs=2)
    _, trainer = _fit(tmp_path, [callback], max_epochs=4, check_val_every_n_epoch=2)
    steps = [e.step for e in read_events(trainer.logger.log_dir).Images("cam/features.3/gradcam")]
    assert steps == [0, 11, 23]


def test_trainer_validate_runs_under_inference_mode(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    model = TinyNet()
    _, val = loaders()
    trainer = pl.Trainer(logger=TensorBoardLogger(str(tmp_path), name="v"), callbacks=[callback], **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a skipped validation would warn
        trainer.validate(model, val)
    assert len(callback.history) == 1
    assert isinstance(trainer.logger, TensorBoardLogger)
    assert "cam/features.3/gradcam" in read_events(trainer.logger.log_dir).Tags()["images"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layer="features.9"), "features.9"),
        (dict(layer="feature.3"), "closest: 'features.3'"),
    ],
)
def test_bad_layer_fails_before_the_first_training_step(tmp_path, kwargs, match):
    model = TinyNet()
    train, val = loaders()
    trainer = pl.Trainer(max_epochs=1, callbacks=[GradCAMCallback(**kwargs)], logger=False, **QUIET)
    with pytest.raises(ValueError, match=match):
        trainer.fit(model, train, val)
    assert model.train_steps == 0


def test_engine_options_reach_the_engine_and_guided_methods_log_saliency(tmp_path):
    callback = GradCAMCallback(
        layer="features.3", method=["gradcam", "guided-gradcam"], num_samples=4,
        eigen_smooth=True, aug_smooth=True, aug_scales=[1.0], chunk_size=3,
    )
    made: list[CAMOptions] = []
    real = CAMEngine.from_options

    def spy(model, layer, method, options):
        made.append(options)
        return real(model, layer, method, options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CAMEngine, "from_options", spy)
        model, trainer = _fit(tmp_path, [callback], max_epochs=1)
    expected = CAMOptions(eigen_smooth=True, aug_smooth=True, aug_scales=(1.0,), chunk_size=3)
    assert callback.options.engine == expected and made == [expected]  # one engine for the run
    events = read_events(trainer.logger.log_dir)
    images = set(events.Tags()["images"])
    assert "cam_saliency/features.3/guided-gradcam" in images
    assert "cam_saliency/features.3/gradcam" not in images  # only guided methods have a saliency image
    tile = events.Images("cam_saliency/features.3/guided-gradcam")[0]
    assert (tile.width, tile.height) == (262, 262)  # 2x2 grid of 16x16 tiles shown at 128 px, 2 px padding


@pytest.fixture
def exploding(monkeypatch):
    """The first maps (when training starts) succeed; every later observation raises."""
    real = core.observe

    def observe(run, options, trainer, *args, **kwargs):
        if trainer.global_step > 0:
            raise RuntimeError("boom")
        return real(run, options, trainer, *args, **kwargs)

    monkeypatch.setattr(core, "observe", observe)


def test_a_failure_after_the_first_maps_warns_and_training_goes_on(tmp_path, exploding):
    plain = _snapshot(*_fit(tmp_path / "a", []))
    with pytest.warns(RuntimeWarning, match="skipped the maps at step .*boom"):
        model, trainer = _fit(tmp_path / "b", [GradCAMCallback(layer="features.3")])
    assert trainer.current_epoch == 2
    _assert_same_training(plain, _snapshot(model, trainer))


def test_strict_mode_reraises(tmp_path, exploding):
    with pytest.raises(RuntimeError, match="boom"):
        _fit(tmp_path, [GradCAMCallback(layer="features.3", strict=True)])


def test_without_tensorboard_writes_png_files_and_says_so(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    with pytest.warns(UserWarning, match="CSVLogger takes no images: writing them as PNG files under"):
        _, trainer = _fit(tmp_path, [callback], logger=CSVLogger(str(tmp_path), name="csv"), max_epochs=1)
    folder = os.path.join(trainer.log_dir, "cam", "features.3", "gradcam")
    # when training starts, then val_loss's step: 6 batches, one before
    assert sorted(os.listdir(folder)) == ["step_00000000.png", "step_00000005.png"]


def test_label_is_the_default_target_and_predicted_otherwise(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    _fit(tmp_path / "a", [callback], max_epochs=1)
    batch = callback.fixed_batch
    assert batch is not None and batch.labels is not None
    labels = batch.labels
    assert default_target(task_of(batch), callback.options.target, batch) is labels
    assert torch.equal(labels, torch.stack([loaders()[1].dataset[i][1] for i in range(4)]))


class ImagesOnlyValidation(TinyNet):
    def validation_step(self, batch, index):  # validation batches hold images only
        self.log("val_mean", self(batch[0]).mean())


def _fit_without_val_labels(tmp_path, callback, max_epochs):
    pl.seed_everything(7, verbose=False)
    train, labelled = loaders()
    images = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(labelled.dataset.tensors[0]), batch_size=2
    )
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[callback],
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        **QUIET,
    )
    trainer.fit(ImagesOnlyValidation(), train, images)
    return trainer


@pytest.mark.parametrize("strict", [False, True])
def test_label_target_without_labels_stops_the_run_before_training(tmp_path, strict):
    # It used to warn and explain the predicted class: a setting that cannot work as asked, so an error.
    callback = GradCAMCallback(layer="features.3", num_samples=2, target="label", strict=strict)
    with pytest.raises(CAMConfigurationError, match="`target='label'` but the batches carry no labels"):
        _fit_without_val_labels(tmp_path, callback, max_epochs=1)


def test_default_target_without_labels_explains_the_prediction(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    trainer = _fit_without_val_labels(tmp_path, callback, max_epochs=2)
    assert trainer.current_epoch == 2 and callback.history.recorded == 3


def test_no_validation_data_uses_training_samples_once_warned(tmp_path):
    pl.seed_everything(7, verbose=False)
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    train, _ = loaders()
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[callback], logger=TensorBoardLogger(str(tmp_path), name="t"), **QUIET
    )
    with pytest.warns(UserWarning, match="no validation data"):
        trainer.fit(TinyNet(), train)
    batch = callback.fixed_batch
    assert batch is not None and isinstance(trainer.logger, TensorBoardLogger)
    assert torch.equal(batch.inputs.cpu(), torch.stack([train.dataset[i][0] for i in range(2)]))
    # When training starts; then Lightning logs a training epoch's metrics at the step of its last batch.
    overlays = read_events(trainer.logger.log_dir).Images("cam/features.3/gradcam")
    assert [e.step for e in overlays] == [0, 5, 11]


def test_state_survives_a_checkpoint_and_resume(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=3)
    _, trainer = _fit(tmp_path / "first", [callback], max_epochs=1, enable_checkpointing=True)
    ckpt = trainer.checkpoint_callback.best_model_path
    state = torch.load(ckpt, weights_only=True)["callbacks"][callback.state_key]
    assert callback.fixed_batch is not None
    assert torch.equal(state["batch"]["inputs"], callback.fixed_batch.inputs.cpu())
    resumed = GradCAMCallback(layer="features.3", num_samples=3)
    train, val = loaders()
    trainer2 = pl.Trainer(
        max_epochs=2, callbacks=[resumed], logger=TensorBoardLogger(str(tmp_path), name="second"), **QUIET
    )
    trainer2.fit(TinyNet(), train, val, ckpt_path=ckpt)
    assert resumed.fixed_batch is not None and isinstance(trainer2.logger, TensorBoardLogger)
    assert torch.equal(resumed.fixed_batch.inputs.cpu(), callback.fixed_batch.inputs.cpu())
    # The first run's step-0 frame and validation (at its val_loss step, 5), then one validation after
    # resuming (at 11): the resumed run's own check when training starts logs nothing.
    first_val = [e.step for e in read_events(trainer.logger.log_dir).Scalars("val_loss")]
    events = read_events(trainer2.logger.log_dir)
    second_val = [e.step for e in events.Scalars("val_loss")]
    assert first_val == [5] and second_val == [11]
    assert resumed.history.steps("features.3", "gradcam") == [0, *first_val, *second_val]
    steps = [e.step for e in events.Scalars("cam_drift/features.3/gradcam/change_prev")]
    assert steps == second_val


def test_automatic_layer_survives_a_resume(tmp_path):
    callback = GradCAMCallback(num_samples=2)
    with pytest.warns(UserWarning, match="no `layer` given"):
        _, trainer = _fit(tmp_path / "first", [callback], max_epochs=1, enable_checkpointing=True)
    resumed = GradCAMCallback(num_samples=2)
    assert resumed.state_key == callback.state_key  # the key does not change when the layer is chosen
    train, val = loaders()
    trainer2 = pl.Trainer(
        max_epochs=2, callbacks=[resumed], logger=TensorBoardLogger(str(tmp_path), name="second"), **QUIET
    )
    trainer2.fit(TinyNet(), train, val, ckpt_path=trainer.checkpoint_callback.best_model_path)
    assert resumed.layers == ["features"]
    assert len(resumed.history) == 3  # step 0 and 6 of the first run, 12 of the second


def test_two_callbacks_keep_separate_state(tmp_path):
    a = GradCAMCallback(layer="features.3", num_samples=2)
    b = GradCAMCallback(layer="features.0", num_samples=2, tag_prefix="early")
    assert a.state_key != b.state_key
    _, trainer = _fit(tmp_path, [a, b], max_epochs=1)
    tags = read_events(trainer.logger.log_dir).Tags()["images"]
    assert "cam/features.3/gradcam" in tags and "early/features.0/gradcam" in tags


def _tensors_in(value, seen):
    """Every tensor reachable from ``value`` via attributes, dicts, lists and tuples (modules excluded)."""
    if id(value) in seen or isinstance(value, torch.nn.Module):
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set)):
        children = list(value)
    elif hasattr(value, "__dict__"):
        children = list(vars(value).values())
    else:
        return []
    return [t for child in children for t in _tensors_in(child, seen)]


def test_between_validations_only_the_batch_and_history_are_held(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    model, _ = _fit(tmp_path, [callback], max_epochs=2)
    held = _tensors_in(callback, set())
    frames = callback.history.frames()[("features.3", "gradcam")]
    assert frames.shape == (3, 4, 16, 16)  # step 0 and two validations of 4 maps at the input's 16x16
    batch = callback.fixed_batch
    assert batch is not None
    expected = {id(t) for t in (batch.inputs, batch.labels, batch.masks) if t is not None}
    expected |= {id(t) for t in _tensors_in(callback.history, set())}
    assert {id(t) for t in held} == expected  # nothing else: no activations, gradients or outputs
    assert all(t.grad_fn is None and not t.requires_grad for t in held)
    history_bytes = sum(t.numel() * t.element_size() for t in _tensors_in(callback.history, set()))
    assert history_bytes == 3 * 4 * 16 * 16 * 4  # float32 frames, nothing more


def test_automatic_layer_choice(tmp_path):
    callback = GradCAMCallback(num_samples=2)
    with pytest.warns(UserWarning, match="no `layer` given; explaining 'features'"):
        _fit(tmp_path, [callback], max_epochs=1)
    assert callback.layers == ["features"]


def test_every_new_option_on_training_samples_and_faithfulness_and_training_stays_the_same(tmp_path):
    plain = _snapshot(*_fit(tmp_path / "without", [], dict_batches=True))
    probe = Probe()
    faithfulness = ["deletion", "insertion", "average_drop", "increase_in_confidence"]
    callback = GradCAMCallback(layer="features.3", num_samples=4, train_samples=3, faithfulness=faithfulness)
    model, trainer = _fit(tmp_path / "with", [callback, probe], dict_batches=True)
    _assert_same_training(plain, _snapshot(model, trainer))
    events = read_events(trainer.logger.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert [e.step for e in events.Images("cam_train/features.3/gradcam")] == [0, *val_steps]
    # The first 3 training samples by index, whatever the shuffled loader drew (up to the data's own noise).
    expected = torch.stack([DictData(12, 1).base[i][0] for i in range(3)])
    batch = callback._run.train_batch
    assert batch is not None and batch.labels is not None
    torch.testing.assert_close(batch.inputs.cpu(), expected, atol=0.06, rtol=0)
    model.eval()
    maps = compute_cam(model, batch.inputs, "features.3", target=batch.labels)
    p = maps.flatten(1) / maps.flatten(1).sum(dim=1, keepdim=True)
    peaked = float((1 - (-(p * torch.log(p.clamp(min=1e-30))).sum(dim=1)) / math.log(p.shape[1])).mean())
    train = events.Scalars("cam_train_focus/features.3/gradcam/concentration")
    val = events.Scalars("cam_focus/features.3/gradcam/concentration")
    gap = events.Scalars("cam_gap/features.3/gradcam/concentration")
    assert [e.step for e in gap] == [0, *val_steps]  # the step-0 frame's numbers too
    assert train[-1].value == pytest.approx(peaked, abs=1e-5)  # the final weights' maps
    assert gap[-1].value == pytest.approx(train[-1].value - val[-1].value, abs=1e-6)
    for name in faithfulness:  # the numbers themselves: tests/capture/test_faithfulness.py
        logged = events.Scalars(f"cam_faith/features.3/gradcam/{name}")
        assert [e.step for e in logged] == [0, *val_steps] and all(0 <= e.value <= 1 for e in logged)


class GradsAtEachStep(pl.Callback):
    """Every parameter's ``.grad`` as the optimizer is about to step."""

    def __init__(self):
        self.grads: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append([p.grad.clone() for p in pl_module.parameters()])


def _compiled_graphs(model) -> dict[str, int]:
    """How many graphs dynamo holds for the model's ``training_step`` and ``forward`` code."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    codes = {"training_step": type(model).training_step.__code__, "forward": type(model).forward.__code__}
    return {name: len(_debug_get_cache_entry_list(code)) for name, code in codes.items()}


def _compiled_fit(tmp_path, callbacks, backend):
    torch._dynamo.reset()
    pl.seed_everything(7, verbose=False)
    model = TinyNet()
    grads = GradsAtEachStep()
    train = DataLoader(tiny_data(8, 1), batch_size=4, shuffle=True)  # training batches of 4
    val = DataLoader(tiny_data(8, 2), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[*callbacks, grads], logger=False, enable_checkpointing=False,
        deterministic=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0, **QUIET,
    )
    trainer.fit(cast(Any, torch.compile(model, backend=backend)), train, val)
    return model, grads.grads, _compiled_graphs(model)


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_a_compiled_model_trains_bit_for_bit_the_same_and_compiles_nothing_more(tmp_path, backend):
    if backend == "inductor" and not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("inductor on the CPU needs a C++ compiler, and this machine has none")
    model_a, grads_a, graphs_a = _compiled_fit(tmp_path / "without", [], backend)
    callback = GradCAMCallback(layer="features.3", num_samples=8)  # batches of 8 against training's 4
    model_b, grads_b, graphs_b = _compiled_fit(tmp_path / "with", [callback], backend)
    assert callback.history.recorded == 3  # the maps of the step-0 frame and of both validations
    # Explaining compiled nothing: no graph of the forward for 8 samples, no dynamic training graph.
    assert graphs_b == graphs_a
    assert len(grads_a) == len(grads_b) == 4
    for step_a, step_b in zip(grads_a, grads_b, strict=True):
        for a, b in zip(step_a, step_b, strict=True):
            assert torch.equal(a, b)
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key


def test_the_engine_explains_a_compile_wrapper_through_the_module_it_wraps():
    pl.seed_everything(3, verbose=False)
    net = TinyNet()
    images = tiny_data(4, 5).tensors[0]
    wrapped = cast(torch.nn.Module, torch.compile(net, backend="aot_eager"))
    engine = CAMEngine(wrapped, "features.3")  # the user's own path, not "_orig_mod.features.3"
    assert engine.model is net
    expected = CAMEngine(net, "features.3")(images).raw
    assert torch.equal(engine(images).raw[("features.3", "gradcam")], expected[("features.3", "gradcam")])


class NanFromTheSecondEpoch(TinyNet):
    """Trains normally; from the second epoch on, its eval-mode output is NaN (a model gone bad)."""

    def forward(self, x):
        out = super().forward(x)
        return out * float("nan") if not self.training and self.current_epoch >= 1 else out


def test_nan_outputs_are_warned_as_such_and_their_numbers_are_nan(tmp_path):
    pl.seed_everything(7, verbose=False)
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[callback], logger=TensorBoardLogger(str(tmp_path), name="run"),
        default_root_dir=str(tmp_path), enable_checkpointing=False, num_sanity_val_steps=0, **QUIET,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(NanFromTheSecondEpoch(), *loaders())
    messages = [str(w.message) for w in caught]
    assert any("output" in m and "NaN for samples 0, 1, 2, 3 of 4" in m for m in messages)
    assert not any("negative at every position" in m for m in messages)
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    for name in ("change_prev", "change_first", "shift_prev", "shift_first"):
        values = [e.value for e in events.Scalars(f"cam_drift/features.3/gradcam/{name}")]
        assert len(values) == 2 and math.isfinite(values[0]) and math.isnan(values[1]), name
    assert math.isnan(float(trainer.callback_metrics["cam_drift/features.3/gradcam/change_first"]))


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        (dict(layer="features.3", num_samples=4), dict(layer="features.3", num_samples=8), "features.3"),
        (dict(layer="features.-1"), dict(layer="features.4", method=["layercam", "gradcam"]), "features.4"),
        (dict(layer=None), dict(layer=None, num_samples=2), "<picked layer>"),
        # The second's overlays would land on the first's heatmaps.
        (dict(layer="features.3"), dict(layer="features.3", tag_prefix="cam_heatmap"), "cam_heatmap/feat"),
        # The second's overlays would land among the first's focus numbers, its own numbers on the first's
        # training samples' (train_samples: the first's own tags under cam_train...).
        (dict(layer="features.3"), dict(layer="features.3", tag_prefix="cam_focus"), "cam_focus/feat"),
        (dict(layer="features.3"), dict(layer="features.3", tag_prefix="cam_train"), "cam_train_focus/feat"),
    ],
    ids=["same-layer", "same-module-two-names", "both-picked", "prefix-inside-another-tag", "prefix-focus",
         "prefix-train"],
)
def test_two_callbacks_writing_one_tag_are_refused_at_setup_naming_both(tmp_path, first, second, shared):
    one, two = GradCAMCallback(**first), GradCAMCallback(**second)
    model = TinyNet()
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[one, two], logger=False, default_root_dir=str(tmp_path), **QUIET
    )
    with pytest.raises(CAMConfigurationError, match="two callbacks would write the same tags") as raised:
        trainer.fit(model, *loaders())
    message = str(raised.value)
    assert shared in message
    for options in (first, second):
        assert f"num_samples={options.get('num_samples', 16)}" in message
        assert repr(options["layer"]) in message
    assert model.train_steps == 0


def test_two_callbacks_with_their_own_tags_run_side_by_side(tmp_path):
    one = GradCAMCallback(layer="features.-1", num_samples=4)
    two = GradCAMCallback(layer="features.4", num_samples=8, tag_prefix="cam8")
    _, trainer = _fit(tmp_path, [one, two], max_epochs=1)
    images = set(read_events(trainer.logger.log_dir).Tags()["images"])
    assert {"cam/features.4/gradcam", "cam8/features.4/gradcam"} <= images


def test_a_resolved_layer_whose_name_cannot_name_a_file_is_refused_at_setup(tmp_path):
    model = TinyNet()
    model.add_module("n" * 250, torch.nn.Identity())  # the last child: what layer "-1" resolves to
    trainer = pl.Trainer(max_epochs=1, callbacks=[GradCAMCallback("-1")], logger=False,
                         default_root_dir=str(tmp_path), **QUIET)
    # The summary's file: "cam_summary_" (12) + 250 + "_gradcam.png" (12) = 274 bytes.
    with pytest.raises(CAMConfigurationError, match=r"`layer` 'n{40}'.* would be 274 bytes"):
        trainer.fit(model, *loaders())
    assert model.train_steps == 0


class OneShotStream(torch.utils.data.IterableDataset):
    """A validation stream read once: every ``iter()`` hands out the same iterator."""

    def __init__(self, data):
        self.data = data
        self._shared = iter(data)

    def __iter__(self):
        return self._shared


class CountsValidationSamples(TinyNet):
    def __init__(self):
        super().__init__()
        self.validated: list[torch.Tensor] = []

    def validation_step(self, batch, index):
        self.validated.append(batch[0].clone())
        return super().validation_step(batch, index)


def test_a_one_shot_validation_stream_loses_no_sample_to_the_callback(tmp_path):
    data = tiny_data(12, 2)
    pl.seed_everything(7, verbose=False)
    model = CountsValidationSamples()
    callback = GradCAMCallback(layer="features.3", num_samples=6)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[callback], logger=TensorBoardLogger(str(tmp_path), name="run"),
        default_root_dir=str(tmp_path), enable_checkpointing=False, num_sanity_val_steps=0, **QUIET,
    )
    train, _ = loaders()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, DataLoader(OneShotStream(data), batch_size=4))
    seen = torch.cat(model.validated)
    assert torch.equal(seen, data.tensors[0])  # all 12, in order
    said = [str(w.message) for w in caught if "one-shot stream" in str(w.message)]
    assert len(said) == 1 and "explaining the first 6 samples the validation loop itself reads" in said[0]
    assert callback.fixed_batch is not None
    assert torch.equal(callback.fixed_batch.inputs, data.tensors[0][:6])  # the loop's own first six
    assert callback.fixed_batch.labels is not None
    assert torch.equal(callback.fixed_batch.labels, data.tensors[1][:6])
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [5]  # from the first validation on


def test_a_one_shot_training_stream_without_validation_loses_no_sample(tmp_path):
    data = tiny_data(12, 1)
    pl.seed_everything(7, verbose=False)
    model = TinyNet()
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[callback], logger=False, limit_val_batches=0,
        default_root_dir=str(tmp_path), enable_checkpointing=False, **QUIET,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, DataLoader(OneShotStream(data), batch_size=2))
    assert model.train_steps == 6  # all 12 samples, 2 a step
    assert any("the training loop itself reads" in str(w.message) for w in caught)
    assert callback.fixed_batch is not None
    assert torch.equal(callback.fixed_batch.inputs, data.tensors[0][:4])
    assert callback.history.recorded == 1
