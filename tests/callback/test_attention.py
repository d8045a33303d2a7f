"""The attention alarm: its rules on numbers by hand, and once per (layer, method, cause) in a run."""

from __future__ import annotations

import re
import types
import warnings
from pathlib import Path
from typing import Any, cast

import pytest
import pytorch_lightning as pl
import torch
from lit_models import loaders, make_module_class
from pytorch_lightning.plugins.precision import Precision

import cam_callback
from cam_callback import AttentionWarning, GradCAMCallback
from cam_callback.callback import attention, observation
from cam_callback.callback.attention import AlarmRule, alarm_message, alarms, learned
from cam_callback.callback.history import MapHistory
from cam_callback.callback.loggers import RunOutput
from cam_callback.callback.observation import observe
from cam_callback.callback.reporting import Reporter
from cam_callback.callback.run import RunState
from cam_callback.callback.trainer import LightningNamespace, TrainerLike

TinyNet: Any = make_module_class(pl)
NAMESPACE = LightningNamespace.of(pl.loggers, pl.strategies)
# Rules on numbers every map has (consistency is NaN for a batch whose classes have one map each, and a NaN
# never fires): they fire on any maps, so these tests see when and how often the alarm speaks.
ALWAYS = (
    AlarmRule("a peaked place", "concentration", -1.0, -10.0),
    AlarmRule("the image's border", "border_share", -1.0, -10.0),
)


def test_attention_warning_is_a_user_warning_at_the_top_level():
    assert issubclass(cam_callback.AttentionWarning, UserWarning)
    assert "AttentionWarning" in cam_callback.__all__


def test_rules_fire_strictly_above_their_thresholds():
    rules = (AlarmRule("x", "consistency", 0.9, 0.05), AlarmRule("y", "border_share", 1.5, 0.2))
    focus = {
        ("a", "gradcam"): {"consistency": 0.95, "border_share": 1.5},  # on the threshold: silent
        ("b", "gradcam"): {"consistency": 0.9, "border_share": 1.6},
        ("c", "gradcam"): {"border_share": 0.2},  # no consistency (every class one sample)
    }
    fired = [(a.key[0], a.rule.number, a.value) for a in alarms(focus, None, rules)]
    assert fired == [("a", "consistency", 0.95), ("b", "border_share", 1.6)]


def test_with_a_step_0_frame_a_rule_also_needs_its_margin_above_it():
    rules = (AlarmRule("x", "consistency", 0.9, 0.05),)
    focus = {
        ("a", "m"): {"consistency": 0.96},
        ("b", "m"): {"consistency": 0.96},
        ("c", "m"): {"consistency": 0.96},
    }
    start = {("a", "m"): {"consistency": 0.92}, ("b", "m"): {"consistency": 0.90}}  # c: none at step 0
    fired = alarms(focus, start, rules)
    assert [(a.key[0], a.start) for a in fired] == [("b", 0.90), ("c", None)]  # a rose by 0.04 only


def test_default_rules_are_the_measured_thresholds():
    measured = {(r.number, r.threshold, r.margin) for r in attention.RULES}
    assert measured == {("consistency", 0.75, 0.1)}
    assert attention.BORDER_SHARE == 1.3 and attention.MIN_CELLS == 4


def test_pairs_with_coarse_maps_are_not_judged():
    rules = (AlarmRule("x", "consistency", 0.5, 0.1),)
    focus = {("layer4", "gradcam"): {"consistency": 0.9}, ("layer3", "gradcam"): {"consistency": 0.9}}
    fired = alarms(focus, None, rules, coarse={("layer4", "gradcam")})
    assert [a.key for a in fired] == [("layer3", "gradcam")]


@pytest.mark.parametrize(("border", "said"), [(1.31, True), (1.3, False), (None, False)])
def test_message_says_border_only_when_border_share_is_above_its_level(border, said):
    numbers = {"consistency": 0.9} if border is None else {"consistency": 0.9, "border_share": border}
    (alarm,) = alarms({("l", "m"): numbers}, None, (AlarmRule("a fixed place", "consistency", 0.5, 0.1),))
    text = alarm_message(alarm, 3, "cam/l/m")
    assert ("on the image's border (border_share 1.31)" in text) is said


def test_message_names_layer_method_number_value_threshold_and_tag():
    rule = AlarmRule("the border", "border_share", 1.8, 0.2)
    key = ("layer4", "gradcam++")
    alarm = alarms({key: {"border_share": 2.25}}, {key: {"border_share": 1.0}}, (rule,))
    text = alarm_message(alarm[0], 40, "cam/layer4/gradcam++")
    parts = ("'layer4'", "gradcam++", "border_share", "2.250", "1.8", "step 40", "1.000 at step 0")
    for part in (*parts, "'cam/layer4/gradcam++'"):
        assert part in text


def _trainer(root: Path, step: int, rank_zero: bool = True) -> TrainerLike:
    train, val = loaders(dict_batches=True)
    return cast(
        TrainerLike,
        types.SimpleNamespace(
            precision_plugin=Precision(),
            is_global_zero=rank_zero,
            global_step=step,
            current_epoch=0,
            val_dataloaders=val,
            train_dataloader=train,
            loggers=[],
            default_root_dir=str(root),
            fast_dev_run=False,
        ),
    )


def _observe_twice(tmp_path: Path, rank_zero: bool = True, judge: bool = True, **kwargs: Any) -> list[str]:
    options = GradCAMCallback(
        layer="features.3", method=["gradcam", "gradcam++"], num_samples=4, **kwargs
    ).options
    reporter = Reporter("GradCAMCallback", strict=False)
    run = RunState(MapHistory(), reporter, RunOutput(NAMESPACE, "cam", reporter), layers=options.layers)
    model = TinyNet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (3, 6):
            observe(run, options, _trainer(tmp_path, step, rank_zero), model, "val", judge=judge)
        run.output.close()
    return [str(w.message) for w in caught if w.category is AttentionWarning]


def test_learned_means_right_more_than_halfway_from_chance_to_all():
    logits = torch.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]  # predicts 0,1,2,3,0,1,2,3
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 3, 2])  # 6 of 8 right: 0.75 > (1 + 1/4) / 2 = 0.625
    assert learned(logits, labels)
    assert not learned(logits, torch.tensor([0, 1, 2, 3, 0, 2, 3, 1]))  # 5 of 8: 0.625, not above
    assert not learned(logits, None) and not learned(logits, labels.float())
    assert not learned(torch.zeros(8, 4, 3, 3), labels)  # per-pixel outputs: not a classifier's
    assert not learned(logits[:, :1], labels)
    # A model naming one class is right on every sample of a batch of that class: chance is then the
    # majority's share (here 1), so such a batch is never judged; 3 of 4 class-0 samples: chance 0.75.
    ones = torch.eye(4)[[0] * 8]
    assert not learned(ones, torch.zeros(8, dtype=torch.long))
    mostly = torch.tensor([0, 0, 0, 1])
    assert not learned(torch.eye(4)[[0, 0, 0, 0]], mostly)  # 3 of 4 = 0.75, not above (1 + 0.75) / 2
    assert learned(torch.eye(4)[[0, 0, 0, 1]], mostly)


def test_a_nan_number_never_fires_and_a_nan_step_0_value_counts_as_none():
    rule = (AlarmRule("x", "consistency", 0.75, 0.1),)
    key = ("layer", "gradcam")
    nan = float("nan")
    assert alarms({key: {"consistency": nan}}, None, rule) == []
    assert alarms({key: {"consistency": nan}}, {key: {"consistency": 0.2}}, rule) == []
    (alarm,) = alarms({key: {"consistency": 0.95}}, {key: {"consistency": nan}}, rule)
    assert alarm.start is None and alarm.value == 0.95


def test_an_observation_warns_once_per_layer_method_and_cause(tmp_path, monkeypatch):
    monkeypatch.setattr(attention, "RULES", ALWAYS)
    monkeypatch.setattr(observation, "learned", lambda outputs, labels: True)
    said = _observe_twice(tmp_path)
    assert len(said) == 4  # 2 methods x 2 causes, at the first of the two validations only
    assert all("at step 3" in s for s in said)
    assert sum("'cam/features.3/gradcam'" in s for s in said) == 2
    assert sum("'cam/features.3/gradcampp'" in s for s in said) == 2


def test_the_training_samples_are_judged_apart_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(attention, "RULES", ALWAYS[:1])
    monkeypatch.setattr(observation, "learned", lambda outputs, labels: True)
    said = _observe_twice(tmp_path, train_samples=4)
    training = [s for s in said if "for the training samples" in s]
    assert len(said) == 4 and len(training) == 2  # per method: the validation samples and the training ones
    assert {re.findall(r"tag '([^']+)'", s)[0] for s in training} == {
        "cam_train/features.3/gradcam", "cam_train/features.3/gradcampp"
    }


@pytest.mark.parametrize("case", ["alarm off", "step-0 frame", "not rank zero", "not learned"])
def test_no_alarm_when_off_on_the_step_0_frame_off_rank_zero_or_unlearned(tmp_path, monkeypatch, case):
    monkeypatch.setattr(attention, "RULES", ALWAYS)
    monkeypatch.setattr(observation, "learned", lambda outputs, labels: case != "not learned")
    if case == "alarm off":
        said = _observe_twice(tmp_path, alarm=False)
    elif case == "step-0 frame":
        said = _observe_twice(tmp_path, judge=False)
    elif case == "not rank zero":
        said = _observe_twice(tmp_path, rank_zero=False)
    else:  # an untrained classifier: its labels are right no more often than chance
        said = _observe_twice(tmp_path)
    assert said == []


def test_a_fit_warns_from_the_first_validation_never_at_the_step_0_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(attention, "RULES", ALWAYS[:1])
    monkeypatch.setattr(observation, "learned", lambda outputs, labels: True)
    pl.seed_everything(7, verbose=False)
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyNet(), *loaders(dict_batches=True))
    said = [str(w.message) for w in caught if w.category is AttentionWarning]
    assert len(said) == 1
    step = re.search(r"at step (\d+)", said[0])
    assert step is not None and 0 < int(step.group(1)) < trainer.global_step  # the validation's step
    # The step-0 frame's numbers are what the margins are measured from.
    assert set(callback._run.focus_start["features.3", "gradcam"]) == {
        "concentration",
        "border_share",
        "consistency",
    }
