"""One observation: the fixed batch explained, its maps recorded, its images sent on, its numbers returned.

The callback's core decides when (:mod:`.core`); this is what happens then, room by room: the fixed batch
(:mod:`.samples`), its task and default target (:mod:`.tasks`), the engine, the history (:mod:`.history`),
the host copy the writer draws the images from (:mod:`.handover`, :mod:`.publishing`, :mod:`.captions`),
the measured set (:mod:`.measure`) and the output (:mod:`.loggers`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from torch import Tensor, nn

from ..capture.engine import CAMEngine, CAMResult
from ..capture.hooks import unwrap_compiled
from ..core.errors import CAMConfigurationError
from .classnames import find_class_names
from .handover import draw_records, hand_over
from .layout import number_layout
from .measure import Measured, agree, explain_share
from .options import CallbackOptions, check_file_names
from .publishing import MapKey
from .run import RunState
from .samples import FixedBatch, first_dataloader, module_device, take_fixed_batch
from .tasks import check_labels, default_target, task_of
from .trainer import TrainerLike, logging_step

__all__ = ["frame_step", "observe"]


def observe(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str, *,
    keep: bool = True, draw_now: bool = False, show: bool = True, sharded: bool = False,
    epoch: int | None = None,
) -> dict[str, float]:
    """Explain the run's fixed batch, record the maps and hand the images over; return the numbers.

    Every rank that calls it computes the maps (one that shards its parameters must); only global rank 0
    records, draws and writes, and returns the numbers by metric name (the others return none). The
    training thread computes the maps and their numbers and starts one copy of them to the host
    (:mod:`.handover`); the captions and grids are drawn by the background writer, which then writes them.
    With ``draw_now`` (the run's first maps, which check the settings) they are drawn here instead, so that a
    display option that cannot work fails at once. With ``keep=False`` (a resumed run's first check) the
    maps are drawn here but neither recorded nor sent.

    With ``measure_samples`` every rank calls it: each explains its share of the measured set
    (:mod:`.measure`), the ranks agree that all went well (else each raises) and gather the per-sample
    numbers, and every rank returns the same numbers, the measured set's means.

    Args:
        run: the run's state (batch, engine, history, output).
        options: the callback's options.
        trainer: the running Trainer.
        pl_module: the LightningModule to explain.
        source: ``"val"`` or ``"train"``: which data the fixed batch comes from, when it is first taken.
        keep: record and send the maps.
        draw_now: draw the images on the calling thread.
        show: explain the shown batch here (False on a rank that only measures).
        sharded: the strategy shards the parameters: every rank explains the whole measured set.
        epoch: the epoch the maps belong to (-1: made before training); None: ``trainer.current_epoch``.
    """
    if options.measure_samples is None:
        return _shown(run, options, trainer, pl_module, source, keep=keep, draw_now=draw_now, epoch=epoch)
    failure: Exception | None = None
    shown: _Shown | None = None
    measured: Measured | None = None
    try:
        if show:
            shown = _explain_shown(run, options, trainer, pl_module, source)
        batch = _fixed_batch(run, options, trainer, pl_module, source)
        engine = _engine(run, options, pl_module)
        assert run.measured is not None  # made with the run when measure_samples is set
        measured = explain_share(
            engine, options, trainer, pl_module, run.task, source, run.measured, sharded, batch
        )
    except Exception as error:  # noqa: BLE001 - every rank must reach the agreement below
        failure = error
    agree(trainer, failure)  # raises on every rank when one failed
    assert measured is not None
    measured.gather(trainer, sharded)
    numbers = {options.display.number(key, name): value for (key, name), value in measured.means().items()}
    if not keep:
        if shown is not None and trainer.is_global_zero:
            _publish(run, options, trainer, shown, keep=False, draw_now=True, epoch=epoch)
        return {}
    assert run.measured is not None
    run.measured.update(measured.maps)
    if shown is not None and trainer.is_global_zero:
        _publish(run, options, trainer, shown, keep=True, draw_now=draw_now, epoch=epoch, numbers=numbers)
    return numbers


@dataclass
class _Shown:
    """The shown batch's maps, computed, before anything is recorded or drawn."""

    batch: FixedBatch
    target: Any
    result: CAMResult
    source: str


def _explain_shown(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str
) -> _Shown:
    batch = _fixed_batch(run, options, trainer, pl_module, source)
    engine = _engine(run, options, pl_module)
    target = default_target(run.task, options.target, batch)
    precision = trainer.precision_plugin
    with precision.forward_context():
        result = engine(precision.convert_input(batch.inputs), target)
    if engine.choice is not None and not run.layers:
        try:
            check_file_names(options.display, (engine.choice.layer,), options.methods)
        except ValueError as error:
            raise CAMConfigurationError(f"the picked layer: {error}") from error
        run.layers, run.reshape = (engine.choice.layer,), engine.choice.reshape
    return _Shown(batch, target, result, source)


def _shown(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str, *,
    keep: bool, draw_now: bool, epoch: int | None,
) -> dict[str, float]:
    """:func:`observe` without a measured set: the numbers are the shown batch's."""
    shown = _explain_shown(run, options, trainer, pl_module, source)
    if not trainer.is_global_zero:
        return {}
    return _publish(run, options, trainer, shown, keep=keep, draw_now=draw_now, epoch=epoch)


def _publish(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, shown: _Shown, *, keep: bool,
    draw_now: bool, epoch: int | None, numbers: dict[str, float] | None = None,
) -> dict[str, float]:
    """Record the shown maps, hand them over to be drawn and written, and send the numbers (rank 0).

    ``numbers``: the measured set's, sent instead of the shown batch's.
    """
    batch, result = shown.batch, shown.result
    step = frame_step(logging_step(trainer, shown.source), run.history.last_step)
    maps = {key: result.normalized(*key) for key in result.raw}
    drawing = hand_over(result, maps, _host_batch(run, batch))  # copies start now, the numbers overlap them
    names = options.class_names or find_class_names(
        getattr(trainer, "datamodule", None), first_dataloader(trainer.val_dataloaders)
    )
    draw = partial(draw_records, drawing, run.task, shown.target, names, step, options.display)
    if not keep:  # drawn all the same: a display option that cannot work fails here too
        draw()
        return {}
    epoch = trainer.current_epoch if epoch is None else epoch
    own = _record(run, options, maps, step, batch.masks, epoch)
    numbers = own if numbers is None else numbers
    run.output.images(trainer, draw() if draw_now else draw)
    run.output.numbers(trainer, numbers, step)
    run.output.layout(trainer, number_layout(numbers, options.display))
    return numbers


def frame_step(step: int, last: int | None) -> int:
    """The step a frame is logged at: its validation's metrics' ``step``, but after the ``last`` frame's.

    Lightning logs a validation that follows a single optimizer step at step 0, where the frame made when
    training starts already is; that validation's frame, and every later one that would fall on or before
    the frame before it, moves to the step after it, so no two frames share a step.
    """
    return step if last is None or step > last else last + 1


def _record(
    run: RunState, options: CallbackOptions, maps: dict[MapKey, Tensor], step: int, masks: Tensor | None,
    epoch: int,
) -> dict[str, float]:
    """Add every pair's maps to the history; return their numbers by metric name."""
    return {
        options.display.number(key, name): value
        for key, pair in maps.items()
        for name, value in run.history.record(*key, pair, step, masks, epoch).items()
    }


def _fixed_batch(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str
) -> FixedBatch:
    """The run's fixed batch on the model's device, taken from the data the first time."""
    if run.batch is None:
        loaders = trainer.val_dataloaders if source == "val" else trainer.train_dataloader
        loader = first_dataloader(loaders)
        if loader is None:
            raise RuntimeError(f"no {source} DataLoader to take the samples from")
        if run.stream is not None:  # a one-shot stream: the loop's own first batches, copied
            copied = run.stream.fixed_batch(*options.keys[1:])
            if copied is None:
                raise RuntimeError(f"no batch of the one-shot {source} stream was read yet")
            batch = copied
        else:
            batch = take_fixed_batch(loader, options.num_samples, *options.keys)
        check_labels(options.target, batch.labels)
        if len(batch.inputs) < options.num_samples:
            data = "validation" if source == "val" else "training"
            run.reporter.once(
                "few-samples",
                f"`num_samples` is {options.num_samples}, but the {data} data has only "
                f"{len(batch.inputs)} samples: explaining those {len(batch.inputs)}",
            )
        run.batch, run.task = batch, task_of(batch)
    device = module_device(pl_module)
    if run.batch.inputs.device != device:
        run.batch = run.batch.to(device)
    return run.batch


def _host_batch(run: RunState, batch: FixedBatch) -> FixedBatch:
    """The run's fixed ``batch`` on the CPU (copied once; the engine reads the one on the model's device)."""
    if run.shown is None:
        run.shown = batch if batch.inputs.device.type == "cpu" else batch.to("cpu")
    return run.shown


def _engine(run: RunState, options: CallbackOptions, pl_module: nn.Module) -> CAMEngine:
    """The run's engine for ``pl_module`` (a new one when the module changed)."""
    if run.engine is None or run.engine.model is not unwrap_compiled(pl_module):
        engine_options = options.engine
        if run.reshape is not None and engine_options.reshape is None:  # a resumed run's picked layer
            engine_options = replace(engine_options, reshape=run.reshape)
        run.engine = CAMEngine.from_options(pl_module, run.layers or None, options.methods, engine_options)
    return run.engine
