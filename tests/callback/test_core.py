"""GradCAMCallback on a real tiny Trainer: what it logs, when, and that training is untouched bit for bit."""

from __future__ import annotations

import os
import random
import warnings
from typing import Any, cast

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from lit_models import SpatialMean, loaders, make_module_class
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from cam_callback import CAMConfigurationError, CAMEngine, GradCAMCallback
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
    # the step of Lightning's own metrics. The step-0 frame's numbers are no Lightning metrics (Lightning
    # forbids logging in on_train_start), so the drift numbers start at the first validation.
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
        assert energy == val_steps
        change = [e.step for e in events.Scalars(f"cam_drift/features.3/{method}/change_prev")]
        assert change == val_steps
    assert not any("epoch" in tag for tag in images)
    summary = events.Images("cam_summary/features.3/gradcam")
    assert len(summary) == 1
    assert os.path.exists(os.path.join(trainer.logger.log_dir, "cam_summary_features.3_gradcam.png"))


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
