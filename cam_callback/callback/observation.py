"""One observation: the fixed batch explained, its maps recorded, its images sent on, its numbers returned.

The callback's core decides when (:mod:`.core`); this is what happens then, room by room: the fixed batch
(:mod:`.samples`), its task and default target (:mod:`.tasks`), the engine, the history (:mod:`.history`),
the images (:mod:`.publishing`, :mod:`.captions`) and the output (:mod:`.loggers`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from torch import Tensor, nn

from ..capture.engine import CAMEngine
from ..capture.hooks import unwrap_compiled
from ..core.errors import CAMConfigurationError
from .captions import captions_for
from .classnames import find_class_names
from .layout import number_layout
from .options import CallbackOptions, check_file_names
from .publishing import MapKey, validation_records
from .run import RunState
from .samples import FixedBatch, first_dataloader, module_device, take_fixed_batch
from .tasks import check_labels, default_target, explained_boxes, task_of
from .trainer import TrainerLike, logging_step

__all__ = ["frame_step", "observe"]


def observe(
    run: RunState, options: CallbackOptions, trainer: TrainerLike, pl_module: nn.Module, source: str, *,
    keep: bool = True, epoch: int | None = None,
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
