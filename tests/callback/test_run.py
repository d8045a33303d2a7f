"""A run's state: what a checkpoint keeps of it, and what a resumed run gets back."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from cam_callback.callback.history import MapHistory
from cam_callback.callback.loggers import RunOutput
from cam_callback.callback.reporting import Reporter
from cam_callback.callback.run import RunState
from cam_callback.callback.samples import DetectionBatch, FixedBatch
from cam_callback.callback.trainer import LightningNamespace

X = torch.zeros(2, 3, 8, 8)
NAMESPACE = LightningNamespace.of(pl.loggers, pl.strategies)


def _run(layers: tuple[str, ...] = ()) -> RunState:
    reporter = Reporter("Test", strict=False)
    return RunState(MapHistory(max_side=4), reporter, RunOutput(NAMESPACE, "cam", reporter), layers=layers)


def test_a_fresh_run_holds_nothing_but_its_configured_layers():
    run = _run(("features.3",))
    assert run.batch is None and run.engine is None and len(run.history) == 0 and not run.checked
    state = run.state_dict()
    assert state["batch"] is None and state["task"] is None and state["layers"] == ["features.3"]


def test_a_detection_batch_survives_a_resume():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
    run = _run(("x",))
    run.batch, run.task = DetectionBatch(X, torch.tensor([1, 2]), boxes), "detection"
    resumed = _run(("x",))
    resumed.load_state_dict(run.state_dict())
    assert isinstance(resumed.batch, DetectionBatch) and resumed.task == "detection"
    torch.testing.assert_close(resumed.batch.masks, boxes)


def test_the_batch_the_picked_layer_and_the_history_come_back():
    run = _run()  # no configured layer: the engine picked one
    run.batch, run.task = FixedBatch(X + 1, torch.tensor([0, 2])), "classification"
    run.layers, run.reshape = ("blocks.1.norm1",), "tokens"
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    run.history.record("blocks.1.norm1", "gradcam", maps, step=3)
    state = run.state_dict()
    assert all(isinstance(t, torch.Tensor) for t in state["batch"].values() if t is not None)

    resumed = _run()
    resumed.load_state_dict(state)
    assert resumed.batch is not None and torch.equal(resumed.batch.inputs, X + 1)
    assert resumed.task == "classification"
    assert (resumed.layers, resumed.reshape) == (("blocks.1.norm1",), "tokens")
    assert resumed.history.steps("blocks.1.norm1", "gradcam") == [3]
    assert resumed.focus_start == {} and resumed.train_focus_start == {}
    # A configured layer is never replaced by a saved one.
    configured = _run(("features.3",))
    configured.load_state_dict(state)
    assert configured.layers == ("features.3",) and configured.reshape is None


def test_the_step_0_focus_numbers_come_back_so_a_resumed_alarm_keeps_its_margin():
    run = _run(("layer4",))
    run.focus_start = {("layer4", "gradcam"): {"consistency": 0.6, "border_share": 1.1}}
    run.train_focus_start = {("layer4", "gradcam++"): {"consistency": 0.7}}
    state = run.state_dict()
    assert state["focus_start"] == {"layer4::gradcam": {"consistency": 0.6, "border_share": 1.1}}
    resumed = _run(("layer4",))
    resumed.load_state_dict(state)
    assert resumed.focus_start == run.focus_start and resumed.train_focus_start == run.train_focus_start
    older = _run(("layer4",))  # a checkpoint from before the focus numbers: nothing to compare with
    older.load_state_dict({k: v for k, v in state.items() if "focus" not in k})
    assert older.focus_start == {} and older.train_focus_start == {}
