"""One observation: the fixed batch explained, its maps recorded, its images sent on, its numbers returned.

The callback's core decides when (:mod:`.core`); this is what happens then, room by room: the fixed batch
(:mod:`.samples`), its task and default target (:mod:`.tasks`), the engine, the history (:mod:`.history`),
the host copy the writer draws the images from (:mod:`.handover`, :mod:`.publishing`, :mod:`.captions`),
the measured set (:mod:`.measure`) and the output (:mod:`.loggers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from torch import Tensor, nn

from ..capture.engine import CAMEngine, CAMResult
from ..capture.faithfulness import faithfulness_numbers
from ..capture.hooks import unwrap_compiled
from ..core.drift import shrink_maps
from ..core.errors import AttentionWarning, CAMConfigurationError
from ..core.focus import focus_numbers
from ..sinks import ImageRecord
from .attention import MIN_CELLS, alarm_message, alarms, learned
from .classnames import find_class_names
from .handover import draw_records, hand_over
from .layout import number_layout
from .measure import Measured, agree, explain_share
from .options import CallbackOptions, check_file_names
from .publishing import Display, MapKey, summary_records
from .run import RunState
from .samples import (
    FixedBatch,
    can_iterate_again,
    first_dataloader,
    loader_of_its_own,
    module_device,
    take_fixed_batch,
)
from .tasks import check_labels, default_target, task_of
from .trainer import TrainerLike, logging_step

__all__ = ["focus_metrics", "frame_step", "observe"]


def observe(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str, *,
    keep: bool = True, draw_now: bool = False, show: bool = True, sharded: bool = False, judge: bool = True,
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
        judge: let the attention alarm (:mod:`.attention`) read the focus numbers; never for the
            untrained model's step-0 frame.
        epoch: the epoch the maps belong to (-1: made before training); None: ``trainer.current_epoch``.
    """
    if options.measure_samples is None:
        return _shown(
            run, options, trainer, pl_module, source, keep=keep, draw_now=draw_now, judge=judge, epoch=epoch
        )
    failure: Exception | None = None
    shown: _Shown | None = None
    measured: Measured | None = None
    try:
        if show:
            shown = _explain_shown(run, options, trainer, pl_module, source, keep)
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
    focus = {key: focus_numbers(small, measured.labels()) for key, small in measured.maps.items()}
    numbers.update(focus_metrics(options.display, focus))  # every rank: the same numbers everywhere
    if not keep:
        if shown is not None and trainer.is_global_zero:
            _publish(run, options, trainer, shown, keep=False, draw_now=True, judge=judge, epoch=epoch)
        return {}
    assert run.measured is not None
    run.measured.update(measured.maps)
    if shown is not None and trainer.is_global_zero:
        _publish(
            run, options, trainer, shown, keep=True, draw_now=draw_now, judge=judge, epoch=epoch,
            numbers=numbers, focus=focus,
        )
    return numbers


@dataclass
class _Shown:
    """The shown batch's maps, computed, before anything is recorded or drawn.

    ``training``: the first ``train_samples`` training samples, their target and maps (when asked for);
    ``faith``: every pair's faithfulness numbers (when asked for).
    """

    batch: FixedBatch
    target: Any
    result: CAMResult
    source: str
    training: tuple[FixedBatch, Any, CAMResult] | None = None
    faith: dict[MapKey, dict[str, float]] = field(default_factory=dict)


def _explain_shown(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str,
    keep: bool = True,
) -> _Shown:
    """The shown batch explained (and, when asked for and kept, the training samples and faithfulness)."""
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
    shown = _Shown(batch, target, result, source)
    if options.train_samples and keep and source == "val":  # explaining training data already: none
        shown.training = _explain_training(run, options, trainer, engine)
    if options.faithfulness and keep:
        shown.faith = _faithfulness(options, trainer, pl_module, batch, result)
    return shown


def _shown(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str, *,
    keep: bool, draw_now: bool, judge: bool, epoch: int | None,
) -> dict[str, float]:
    """:func:`observe` without a measured set: the numbers are the shown batch's."""
    shown = _explain_shown(run, options, trainer, pl_module, source, keep)
    if not trainer.is_global_zero:
        return {}
    return _publish(run, options, trainer, shown, keep=keep, draw_now=draw_now, judge=judge, epoch=epoch)


def _publish(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, shown: _Shown, *, keep: bool,
    draw_now: bool, judge: bool, epoch: int | None, numbers: dict[str, float] | None = None,
    focus: dict[MapKey, dict[str, float]] | None = None,
) -> dict[str, float]:
    """Record the shown maps, hand them over to be drawn and written, and send the numbers (rank 0).

    ``numbers`` and ``focus``: the measured set's drift and focus numbers, sent instead of the shown batch's.
    The faithfulness numbers (when asked for) are the shown batch's; the gap numbers are the training
    samples' focus numbers minus the validation ones logged (the measured set's, when there is one). The
    timeline and the training samples' grids are drawn with the validation's images.
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
    timeline = _timeline(run, options, list(maps), step)
    run.focus = _focus(run, maps, result.classes) if focus is None else focus
    numbers.update(focus_metrics(options.display, run.focus))
    for key, faith in shown.faith.items():
        numbers.update({options.display.number(key, name, "faith"): value for name, value in faith.items()})
    training = None
    if shown.training is not None:
        training, train_numbers = _training_samples(run, options, shown.training, step, names)
        numbers.update(train_numbers)
    else:
        run.train_focus = {}
    if not judge:  # the untrained model's: what the alarm compares with
        run.focus_start, run.train_focus_start = run.focus, run.train_focus
    elif options.alarm:
        _judge(run, options, shown, step)

    def draw_all() -> list[ImageRecord]:
        return [*draw(), *timeline(), *(training() if training is not None else [])]

    run.output.images(trainer, draw_all() if draw_now else draw_all)
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


def _judge(run: RunState, options: CallbackOptions, shown: _Shown, step: int) -> None:
    """Let the alarm read the latest focus numbers of the samples whose classifier has :func:`learned`.

    Pairs whose maps have fewer than :data:`~.attention.MIN_CELLS` cells a side are not judged.
    """
    result = shown.result
    coarse = {key for key, raw in result.raw.items() if min(raw.shape[-2:]) < MIN_CELLS}
    if learned(result.outputs, shown.batch.labels):
        _sound_alarm(run, step, coarse, run.focus, run.focus_start, options.display)
    if shown.training is not None:
        batch, _, training = shown.training
        if learned(training.outputs, batch.labels):
            display = _training_display(options)
            _sound_alarm(run, step, coarse, run.train_focus, run.train_focus_start, display, "train")


def _sound_alarm(
    run: RunState,
    step: int,
    coarse: set[MapKey],
    focus: dict[MapKey, dict[str, float]],
    start: dict[MapKey, dict[str, float]],
    display: Display,
    samples: str = "val",
) -> None:
    """Warn once per (layer, method, cause, samples) whose rule fires on ``focus`` (rank 0).

    ``start``: the step-0 frame's numbers of the same samples; ``coarse``: the pairs whose maps are too
    coarse to judge (:data:`~.attention.MIN_CELLS`); ``display`` names the samples' image tags;
    ``samples``: ``"val"`` or ``"train"`` (the ``train_samples``).
    """
    said = " for the training samples" if samples == "train" else ""
    for alarm in alarms(focus, start, coarse=coarse):
        cause = f"attention:{samples}:{alarm.key[0]}:{alarm.key[1]}:{alarm.rule.number}"
        message = alarm_message(alarm, step, display.tag("", alarm.key), said)
        run.reporter.once(cause, message, AttentionWarning)


def _faithfulness(
    options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, batch: FixedBatch, result: CAMResult
) -> dict[MapKey, dict[str, float]]:
    """Every pair's faithfulness numbers (every computing rank runs the forwards); none without classes."""
    if result.classes is None or not isinstance(result.outputs, Tensor) or result.outputs.dim() != 2:
        return {}  # a callable target or no class logits: nothing to take the probability of
    maps = {key: result.normalized(*key) for key in result.raw}
    precision = trainer.precision_plugin
    with precision.forward_context():
        return faithfulness_numbers(
            pl_module,
            precision.convert_input(batch.inputs),
            maps,
            result.classes,
            options.faithfulness,
            chunk_size=options.engine.chunk_size,
        )


def _explain_training(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, engine: CAMEngine
) -> tuple[FixedBatch, Any, CAMResult] | None:
    """The first ``train_samples`` training samples, their target and their maps (on every computing rank)."""
    if run.train_batch is None:
        loader = first_dataloader(trainer.train_dataloader)
        if loader is None:
            return None
        if not can_iterate_again(loader):  # reading it would take batches from the training loop
            run.reporter.once(
                "train-samples-stream",
                f"`train_samples` is {options.train_samples}, but the training DataLoader reads a one-shot "
                "stream: no training samples are explained",
            )
            return None
        # The training loop may be reading this loader now: never iterate it (a loader of its own).
        run.train_batch = take_fixed_batch(loader_of_its_own(loader), options.train_samples, *options.keys)
    device = run.batch.inputs.device if run.batch is not None else run.train_batch.inputs.device
    batch = run.train_batch = run.train_batch.to(device)
    target = default_target(run.task, options.target, batch)
    precision = trainer.precision_plugin
    with precision.forward_context():
        result = engine(precision.convert_input(batch.inputs), target)
    return batch, target, result


def _training_samples(
    run: RunState,
    options: CallbackOptions,
    explained: tuple[FixedBatch, Any, CAMResult],
    step: int,
    names: Any,
) -> tuple[Callable[[], list[ImageRecord]], dict[str, float]]:
    """The training samples' grids (a function that draws them) and focus and gap numbers.

    Tags ``<prefix>_train/...``; metrics ``<prefix>_train_focus/...`` and ``<prefix>_gap/...`` (the gap:
    training minus validation focus number, ``run.focus``: the measured set's with ``measure_samples``).
    The focus numbers are kept in ``run.train_focus``.
    """
    batch, target, result = explained
    maps = {key: result.normalized(*key) for key in result.raw}
    display = _training_display(options)
    host = batch if batch.inputs.device.type == "cpu" else batch.to("cpu")
    drawing = hand_over(result, maps, host)
    focus = run.train_focus = _focus(run, maps, result.classes)
    numbers = focus_metrics(display, focus)
    for key, train_numbers in focus.items():
        for name, value in train_numbers.items():
            if name in run.focus.get(key, {}):
                numbers[options.display.number(key, name, "gap")] = value - run.focus[key][name]
    return partial(draw_records, drawing, run.task, target, names, step, display), numbers


def _training_display(options: CallbackOptions) -> Display:
    """How the training samples are drawn and named: the callback's display under ``<prefix>_train``."""
    return replace(options.display, tag_prefix=f"{options.tag_prefix}_train")


def _timeline(
    run: RunState, options: CallbackOptions, keys: list[MapKey], step: int
) -> Callable[[], list[ImageRecord]]:
    """A function that draws each pair's live timeline: the kept frames so far (bounded like the summary).

    The frames are taken now (a copy); the drawing may run later, in the background writer.
    """
    frames = {key: stack for key, stack in run.history.frames().items() if key in keys}
    steps = {key: run.history.steps(*key) for key in frames}
    images = run.shown.inputs if run.shown is not None else None  # the fixed batch on the CPU
    epochs = {key: run.history.epochs(*key) for key in frames}
    display = options.display
    return partial(summary_records, frames, steps, images, step, display, epochs=epochs, kind="_timeline")


def _focus(
    run: RunState, maps: dict[MapKey, Tensor], classes: Tensor | None
) -> dict[MapKey, dict[str, float]]:
    """Every pair's focus numbers (:mod:`~cam_callback.core.focus`), on maps of the history's size.

    ``classes``: the class each map explains (its consistency group); None (a callable target): one group,
    as for the measured set.
    """
    return {
        key: focus_numbers(shrink_maps(pair.float(), run.history.max_side), classes)
        for key, pair in maps.items()
    }


def focus_metrics(display: Display, focus: dict[MapKey, dict[str, float]]) -> dict[str, float]:
    """The focus numbers by metric name, ``<prefix>_focus/<layer>/<method>/<name>`` (``display``'s prefix)."""
    return {
        display.number(key, name, "focus"): value
        for key, numbers in focus.items()
        for name, value in numbers.items()
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
