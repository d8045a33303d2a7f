"""One observation: the fixed batch explained, its maps recorded, its images sent on, its numbers returned.

The callback's core decides when (:mod:`.core`); this is what happens then, room by room: the fixed batch
(:mod:`.samples`), its task and default target (:mod:`.tasks`), the engine, the history (:mod:`.history`),
the images (:mod:`.publishing`, :mod:`.captions`) and the output (:mod:`.loggers`).
"""

from __future__ import annotations

from dataclasses import replace
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
from .attention import alarm_message, alarms
from .captions import captions_for
from .classnames import find_class_names
from .layout import number_layout
from .options import CallbackOptions, check_file_names
from .publishing import MapKey, summary_records, validation_records
from .run import RunState
from .samples import FixedBatch, can_iterate_again, first_dataloader, module_device, take_fixed_batch
from .tasks import check_labels, default_target, explained_boxes, task_of
from .trainer import TrainerLike, logging_step

__all__ = ["focus_metrics", "frame_step", "observe"]


def observe(
    run: RunState,
    options: CallbackOptions,
    trainer: TrainerLike,
    pl_module: nn.Module,
    source: str,
    *,
    keep: bool = True,
    judge: bool = True,
    epoch: int | None = None,
) -> dict[str, float]:
    """Explain the run's fixed batch, record the maps and hand the images over; return the numbers.

    Every rank that calls it computes the maps (one that shards its parameters must); only global rank 0
    records, draws and writes, and returns the numbers by metric name (the others return none). With
    ``keep=False`` (a resumed run's first check) the maps are drawn but neither recorded nor sent.

    Args:
        run: the run's state (batch, engine, history, output).
        options: the callback's options.
        trainer: the running Trainer.
        pl_module: the LightningModule to explain.
        source: ``"val"`` or ``"train"``: which data the fixed batch comes from, when it is first taken.
        keep: record and send the maps.
        judge: let the attention alarm (:mod:`.attention`) read the focus numbers; never for the
            untrained model's step-0 frame.
        epoch: the epoch the maps belong to (-1: made before training); None: ``trainer.current_epoch``.
    """
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
    wanted = options.train_samples and keep and source == "val"  # explaining training data already: none
    explained = _explain_training(run, options, trainer, engine) if wanted else None
    faith = _faithfulness(options, trainer, pl_module, batch, result) if options.faithfulness and keep else {}
    if not trainer.is_global_zero:
        return {}
    step = frame_step(logging_step(trainer, source), run.history.last_step)
    maps = {key: result.normalized(*key) for key in result.raw}
    names = options.class_names or find_class_names(
        getattr(trainer, "datamodule", None), first_dataloader(trainer.val_dataloaders)
    )
    texts = partial(captions_for, run.task, result, batch.labels, target, names)
    boxes = [batch.masks, explained_boxes(result.outputs, target)] if run.task == "detection" else None
    records = validation_records(result, maps, batch.inputs, step, options.display, texts=texts, boxes=boxes)
    if not keep:  # drawn all the same: a display option that cannot work fails here too
        return {}
    epoch = trainer.current_epoch if epoch is None else epoch
    numbers = _record(run, options, maps, step, batch.masks, epoch)
    records += _timeline(run, options, list(maps), step)
    run.focus = _focus(run, maps, batch.labels)
    numbers.update(focus_metrics(options, run.focus))
    numbers.update(
        {options.display.number(key, name, "faith"): v for key, n in faith.items() for name, v in n.items()}
    )
    if explained is not None:
        train_records, train_numbers = _training_samples(run, options, explained, step, names)
        records += train_records
        numbers.update(train_numbers)
    if not judge:  # the untrained model's: what the alarm compares with
        run.focus_start = run.focus
    elif options.alarm:
        for alarm in alarms(run.focus, run.focus_start):
            cause = f"attention:{alarm.key[0]}:{alarm.key[1]}:{alarm.rule.number}"
            message = alarm_message(alarm, step, options.display.tag("", alarm.key))
            run.reporter.once(cause, message, AttentionWarning)
    run.output.images(trainer, records)
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
        run.train_batch = take_fixed_batch(loader, options.train_samples, *options.keys)
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
) -> tuple[list[ImageRecord], dict[str, float]]:
    """The training samples' grids, focus numbers and gaps (training minus validation focus numbers).

    Tags ``<prefix>_train/...``; metrics ``<prefix>_train_focus/...`` and ``<prefix>_gap/...``.
    """
    batch, target, result = explained
    maps = {key: result.normalized(*key) for key in result.raw}
    display = replace(options.display, tag_prefix=f"{options.tag_prefix}_train")
    texts = partial(captions_for, run.task, result, batch.labels, target, names)
    records = validation_records(result, maps, batch.inputs, step, display, texts=texts)
    focus = _focus(run, maps, batch.labels)
    numbers = {
        display.number(key, name, "focus"): value for key, n in focus.items() for name, value in n.items()
    }
    for key, train_numbers in focus.items():
        for name, value in train_numbers.items():
            if name in run.focus.get(key, {}):
                numbers[options.display.number(key, name, "gap")] = value - run.focus[key][name]
    return records, numbers


def _timeline(run: RunState, options: CallbackOptions, keys: list[MapKey], step: int) -> list[ImageRecord]:
    """The live timeline of each pair: the kept frames so far as columns (bounded like the summary)."""
    frames = {key: stack for key, stack in run.history.frames().items() if key in keys}
    steps = {key: run.history.steps(*key) for key in frames}
    images = run.batch.inputs.cpu() if run.batch is not None else None  # the history's device
    epochs = {key: run.history.epochs(*key) for key in frames}
    return summary_records(frames, steps, images, step, options.display, epochs=epochs, kind="_timeline")


def _focus(
    run: RunState, maps: dict[MapKey, Tensor], labels: Tensor | None
) -> dict[MapKey, dict[str, float]]:
    """Every pair's focus numbers (:mod:`~cam_callback.core.focus`), on maps of the history's size."""
    return {
        key: focus_numbers(shrink_maps(pair.float(), run.history.max_side), labels)
        for key, pair in maps.items()
    }


def focus_metrics(options: CallbackOptions, focus: dict[MapKey, dict[str, float]]) -> dict[str, float]:
    """The focus numbers by metric name, ``<prefix>_focus/<layer>/<method>/<name>``."""
    return {
        options.display.number(key, name, "focus"): value
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


def _engine(run: RunState, options: CallbackOptions, pl_module: nn.Module) -> CAMEngine:
    """The run's engine for ``pl_module`` (a new one when the module changed)."""
    if run.engine is None or run.engine.model is not unwrap_compiled(pl_module):
        engine_options = options.engine
        if run.reshape is not None and engine_options.reshape is None:  # a resumed run's picked layer
            engine_options = replace(engine_options, reshape=run.reshape)
        run.engine = CAMEngine.from_options(pl_module, run.layers or None, options.methods, engine_options)
    return run.engine
