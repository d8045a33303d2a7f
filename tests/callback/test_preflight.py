"""Settings that cannot work stop the run before its first training step; the first maps: a step-0 frame."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from lit_models import loaders, make_module_class, tiny_data
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cam_callback import CAMConfigurationError, CAMEngine, GradCAMCallback
from cam_callback.core.drift import shrink_maps

TinyNet: Any = make_module_class(pl)
QUIET: dict[str, Any] = dict(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)




def _fit(tmp_path, callback, model=None, val=None, dict_batches=False, **kwargs):
    pl.seed_everything(7, verbose=False)
    model = model if model is not None else TinyNet()
    train, default_val = loaders(dict_batches=dict_batches)
    trainer = pl.Trainer(
        max_epochs=kwargs.pop("max_epochs", 1), callbacks=[callback],
        logger=TensorBoardLogger(str(tmp_path), name="run"), deterministic=True, enable_checkpointing=False,
        **QUIET, **kwargs,
    )
    trainer.fit(model, train, val if val is not None else default_val)
    return model, trainer


class TwiceThrough(TinyNet):
    """Runs its last convolution twice (a shared module)."""

    def forward(self, x):
        return self.head(self.features[3](self.features(x)))


class TupleOutput(TinyNet):
    """Returns (logits, features): no [B, classes] tensor for the default target to read."""

    def forward(self, x):
        features = self.features(x)
        return self.head(features), features

    def training_step(self, batch, index):
        self.train_steps += 1
        x, y = self._xy(batch)
        return nn.functional.cross_entropy(self(x)[0], y)

    def validation_step(self, batch, index):
        pass


class OddMasks(Dataset):
    """Dict samples whose masks are 5x7 on 16x16 images."""

    def __init__(self) -> None:
        self.base = tiny_data(8, 2)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return {"image": x, "label": y, "mask": torch.ones(5, 7)}


class FloatLabels(Dataset):
    def __init__(self) -> None:
        self.base = tiny_data(8, 2)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, y.float() / 3


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "class out of range": (dict(target=7), {}, r"`target`: class 7 is out of range for 3 classes"),
    "layer without a spatial output": (dict(layer="head.3"), {}, r"`layer` 'head.3' gives shape \(4, 3\)"),
    "missing input_key": (dict(input_key="pic"), dict(dict_batches=True), r"`input_key`: 'pic' is not in"),
    "missing label_key": (dict(label_key="lbl"), dict(dict_batches=True), r"`label_key`: 'lbl' is not in"),
    "label_key without labels": (dict(label_key="mask"), dict(dict_batches=True), r"`label_key`: 'mask' hol"),
    "mean of the wrong length": (dict(mean=[0.5, 0.5], std=[0.2, 0.2]), {}, r"`mean` has 2 values"),
    "a shared module": (dict(), dict(model=TwiceThrough), r"`layer` 'features.3' ran more than once"),
    "tuple outputs": (dict(), dict(model=TupleOutput), r"the model's output is tuple, not \[B, classes\]"),
    "masks of another size": (
        dict(), dict(val=DataLoader(OddMasks(), batch_size=2)), r"`mask_key`: the masks hold .* \[4, 5, 7\]"
    ),
    "target label with float labels": (
        dict(target="label"),
        dict(val=DataLoader(FloatLabels(), batch_size=2), num_sanity_val_steps=0),  # no cross-entropy here
        r"`target='label'` explains each sample's true class, but the labels are float32 numbers",
    ),
}


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_setting_that_cannot_work_stops_the_run_before_the_first_training_step(tmp_path, case, strict):
    # These used to surface at the first validation and then be downgraded to a warning at every one, so a
    # whole run could finish without a single map.
    options, run, match = CASES[case]
    run = dict(run)
    callback = GradCAMCallback(**{"layer": "features.3", "num_samples": 4, **options, "strict": strict})
    model = run.pop("model", TinyNet)()
    with pytest.raises(CAMConfigurationError, match=match):
        _fit(tmp_path, callback, model=model, **run)
    assert model.train_steps == 0


def test_the_first_maps_are_a_step_0_frame_of_the_untrained_model_and_the_origin_of_change_first(tmp_path):
    callback = GradCAMCallback(layer="features.3", num_samples=4, history_size=16)
    pl.seed_everything(7, verbose=False)
    untrained = TinyNet()  # the same weights _fit starts from
    _, trainer = _fit(tmp_path, callback, max_epochs=2)
    batch = callback.fixed_batch
    assert batch is not None and batch.labels is not None
    result = CAMEngine(untrained, "features.3")(batch.inputs, batch.labels)
    first = callback.history.frames()[("features.3", "gradcam")][0]
    torch.testing.assert_close(first, shrink_maps(result.normalized("features.3", "gradcam"), 16))
    events = read_events(trainer.logger.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]  # Lightning's steps for the validations
    assert val_steps == [5, 11]
    assert callback.history.steps("features.3", "gradcam") == [0, *val_steps]
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, *val_steps]
    first_change = events.Scalars("cam_drift/features.3/gradcam/change_first")
    previous_change = events.Scalars("cam_drift/features.3/gradcam/change_prev")
    # The step-0 frame's numbers are no Lightning metrics (none may be logged in on_train_start).
    assert [e.step for e in first_change] == [e.step for e in previous_change] == val_steps
    # The first validation compares with the untrained model's maps, both as "first" and "previous".
    assert first_change[0].value == pytest.approx(previous_change[0].value)


def test_a_failure_of_the_first_maps_is_an_error_even_when_the_model_fails(tmp_path):
    class FailsWhenExplained(TinyNet):
        def forward(self, x):
            if not self.training:
                raise RuntimeError("no eval forward here")
            return super().forward(x)

        def validation_step(self, batch, index):
            pass

    model = FailsWhenExplained()
    with pytest.raises(CAMConfigurationError, match="no eval forward here.*when training starts") as caught:
        _fit(tmp_path, GradCAMCallback(layer="features.3", num_samples=2), model=model)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert model.train_steps == 0


def test_without_validation_data_at_train_start_the_first_validation_checks(tmp_path):
    # check_val_every_n_epoch=2 and no sanity check: Lightning loads the validation data only at the first
    # validation, so that is where the first maps are made, and where a bad setting stops the run.
    settings = dict(max_epochs=4, check_val_every_n_epoch=2, num_sanity_val_steps=0)
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    _, trainer = _fit(tmp_path / "good", callback, **settings)
    val_steps = [e.step for e in read_events(trainer.logger.log_dir).Scalars("val_loss")]
    assert val_steps == [11, 23]  # global steps 12 and 24, logged by Lightning one step earlier
    assert callback.history.steps("features.3", "gradcam") == val_steps  # no step-0 frame: no data yet
    model = TinyNet()
    with pytest.raises(CAMConfigurationError, match="class 9 is out of range.*at the validation of step 12"):
        _fit(tmp_path / "bad", GradCAMCallback(layer="features.3", target=9), model=model, **settings)
    assert model.train_steps == 12


def test_under_validate_the_first_maps_are_checked_too(tmp_path):
    callback = GradCAMCallback(layer="features.3", target=9)
    trainer = pl.Trainer(logger=TensorBoardLogger(str(tmp_path), name="v"), callbacks=[callback], **QUIET)
    with pytest.raises(CAMConfigurationError, match="class 9 is out of range.*at the validation of step 0"):
        trainer.validate(TinyNet(), loaders()[1])


def test_after_the_first_maps_a_failure_warns_and_skips(tmp_path):
    class BreaksLater(TinyNet):
        def forward(self, x):
            if not self.training and self.train_steps > 0:
                raise RuntimeError("broken later")
            return super().forward(x)

        def validation_step(self, batch, index):
            pass

    callback = GradCAMCallback(layer="features.3", num_samples=2)
    with pytest.warns(RuntimeWarning, match="skipped the maps at step 6: RuntimeError: broken later"):
        _, trainer = _fit(tmp_path, callback, model=BreaksLater(), max_epochs=2)
    assert trainer.current_epoch == 2 and callback.history.steps("features.3", "gradcam") == [0]
