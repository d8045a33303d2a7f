"""What one ``fit``, ``validate`` or ``test`` run of a callback holds; ``setup`` starts a new one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..capture.engine import CAMEngine
from .history import MapHistory
from .loggers import RunOutput
from .measure import MeasuredHistory
from .reporting import Reporter
from .samples import DetectionBatch, FixedBatch, StreamCopy
from .tasks import task_of

__all__ = ["RunState"]


@dataclass
class RunState:
    """The per-run state of a callback: replaced whole when a run starts, restored from a checkpoint.

    Attributes:
        history: the maps of past validations, bounded (in the checkpoint).
        reporter: this run's warnings, each said once.
        output: where this run's output goes, and its writer.
        batch: the fixed batch, once taken (in the checkpoint), on the model's device.
        shown: the same batch on the CPU, which the images are drawn from (once needed).
        task: the task read from it (:data:`~cam_callback.callback.tasks.TASKS`).
        engine: the engine for the model being explained, once made.
        layers: the layers explained: as configured, or as the engine picked them (in the checkpoint).
        reshape: the ``reshape`` the engine picked with the layer, when none was configured.
        validated: whether a validation ran in this fit.
        checked: whether this run's first maps were computed (:mod:`~cam_callback.callback.preflight`).
        train_batch: the first ``train_samples`` training samples, once taken.
        focus: the latest focus numbers by (layer, method) and name (global rank 0 only).
        focus_start: the step-0 frame's focus numbers, when this run made one (what the alarm compares
            with; in the checkpoint, so a resumed run compares with its first run's step 0).
        train_focus, train_focus_start: the same for the ``train_samples`` (global rank 0 only).
        measured: each measured sample's first and latest small maps, with ``measure_samples`` (in the
            checkpoint).
        one_shot: by source (``"val"``, ``"train"``), whether its DataLoader is a one-shot stream.
        stream: the copy of a one-shot stream's first batches, the fixed batch's source, or None.
    """

    history: MapHistory
    reporter: Reporter
    output: RunOutput
    batch: FixedBatch | None = None
    shown: FixedBatch | None = None
    task: str = "unlabelled"
    engine: CAMEngine | None = None
    layers: tuple[str, ...] = ()
    reshape: str | None = None
    validated: bool = False
    checked: bool = False
    train_batch: FixedBatch | None = None
    focus: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    focus_start: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    train_focus: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    train_focus_start: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    measured: MeasuredHistory | None = None
    one_shot: dict[str, bool] = field(default_factory=dict)
    stream: StreamCopy | None = None

    def state_dict(self) -> dict[str, Any]:
        """The fixed batch, the layers and reshape picked, the history: CPU tensors, str and ints only."""
        return {
            "batch": self.batch.state_dict() if self.batch is not None else None,
            "layers": list(self.layers),
            "auto_reshape": self.reshape,
            "task": self.task if self.batch is not None else None,
            "history": self.history.state_dict(),
            "measured": self.measured.state_dict() if self.measured is not None else None,
            "focus_start": _keyed(self.focus_start),
            "train_focus_start": _keyed(self.train_focus_start),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; the layers only when none were configured (they were picked)."""
        batch = state.get("batch")
        kind = DetectionBatch if state.get("task") == "detection" else FixedBatch
        self.batch = kind.from_state_dict(batch) if batch is not None else None
        self.shown = None
        self.task = task_of(self.batch) if self.batch is not None else self.task
        if not self.layers and state.get("layers"):
            self.layers, self.reshape = tuple(state["layers"]), state.get("auto_reshape")
        self.history.load_state_dict(state.get("history", {}))
        self.focus_start = _split(state.get("focus_start") or {})
        self.train_focus_start = _split(state.get("train_focus_start") or {})
        if self.measured is not None and state.get("measured") is not None:
            self.measured.load_state_dict(state["measured"])


_SEPARATOR = "::"  # layer and method in a checkpoint's keys, as the history writes them


def _keyed(numbers: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """Focus numbers by ``"layer::method"``: str and float only, for the checkpoint."""
    return {f"{layer}{_SEPARATOR}{method}": dict(values) for (layer, method), values in numbers.items()}


def _split(numbers: dict[str, dict[str, float]]) -> dict[tuple[str, str], dict[str, float]]:
    """What :func:`_keyed` wrote, by (layer, method) again."""
    restored = {}
    for key, values in numbers.items():
        layer, _, method = key.partition(_SEPARATOR)
        restored[(layer, method)] = {name: float(value) for name, value in values.items()}
    return restored
