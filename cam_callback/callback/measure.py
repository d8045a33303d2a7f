"""The measured set: a validation's numbers averaged over its first ``measure_samples`` samples.

The pictures need few samples, the numbers many. With ``measure_samples`` set, the drift, mask and pointing
numbers are the means over the first ``measure_samples`` samples of the same data the fixed batch comes
from (read by index, each sample with the global RNGs seeded by its index and restored, so the same samples
every validation and no RNG moves). The set is explained ``chunk_size`` samples at a time, so memory holds
one chunk's maps whatever the set's size; each sample's first and latest maps (``history_size`` pixels a
side) are kept for ``change_*`` / ``shift_*`` in :class:`MeasuredHistory`, which is in the checkpoint.

Under DDP each rank explains a fixed share (:func:`share`); the per-sample numbers and maps are gathered so
that every rank holds all of them and logs the same means, the ones one process computes. Under a sharded
strategy (FSDP, DeepSpeed), where each forward needs every rank, every rank explains every chunk. A failure
on one rank is one on all: the ranks agree on it (:func:`agree`) before they gather anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..capture.engine import CAMEngine
from ..core.drift import shrink_maps
from .history import sample_numbers, usable_mean
from .publishing import MapKey
from .samples import FixedBatch, first_dataloader, module_device, sample_count, take_samples
from .tasks import default_target
from .trainer import TrainerLike

__all__ = ["Measured", "MeasuredHistory", "agree", "explain_share", "measured_count", "share"]

_SEPARATOR = "::"


@dataclass
class MeasuredHistory:
    """Per (layer, method), the first and the latest small maps ``[M, h, w]`` of every measured sample.

    Bounded by the set's size and ``max_side`` (the callback's ``history_size``), whatever the run's length.
    """

    max_side: int
    first: dict[MapKey, Tensor] = field(default_factory=dict)
    previous: dict[MapKey, Tensor] = field(default_factory=dict)
    recorded: int = 0

    def references(self, key: MapKey, rows: range, count: int) -> tuple[Tensor, Tensor] | None:
        """The previous and first maps of samples ``rows`` of a set of ``count``, or None before any."""
        if self.recorded == 0 or key not in self.previous or len(self.previous[key]) != count:
            return None
        return self.previous[key][rows.start : rows.stop], self.first[key][rows.start : rows.stop]

    def update(self, maps: dict[MapKey, Tensor]) -> None:
        """Record a validation's small maps ``[M, h, w]`` (CPU) as the latest (and, the first time, first)."""
        for key, small in maps.items():
            if key not in self.first or len(self.first[key]) != len(small):
                self.first[key] = small
            self.previous[key] = small
        self.recorded += 1

    def state_dict(self) -> dict[str, Any]:
        """CPU tensors and ints only, keyed ``"layer::method"``."""

        def keyed(table: dict[MapKey, Tensor]) -> dict[str, Tensor]:
            return {f"{layer}{_SEPARATOR}{method}": v for (layer, method), v in table.items()}

        return {
            "max_side": self.max_side, "recorded": self.recorded,
            "first": keyed(self.first), "previous": keyed(self.previous),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

        def split(table: dict[str, Tensor]) -> dict[MapKey, Tensor]:
            return {tuple(k.split(_SEPARATOR, 1)): v for k, v in table.items()}  # type: ignore[misc]

        self.first, self.previous = split(state.get("first", {})), split(state.get("previous", {}))
        self.recorded = int(state.get("recorded", 0))
        if self.first:
            self.max_side = int(state.get("max_side", self.max_side))


def measured_count(setting: int | str, available: int) -> int:
    """How many samples are measured: ``setting`` (an int or ``"all"``) capped at the ``available`` ones."""
    return available if setting == "all" else min(int(setting), available)


def share(count: int, rank: int, world: int) -> range:
    """The samples rank ``rank`` of ``world`` explains: a contiguous block, the same every validation."""
    return range(count * rank // world, count * (rank + 1) // world)


@dataclass
class Measured:
    """One rank's part of a validation's measured set, before the ranks gather it.

    Attributes:
        count: samples in the whole set.
        numbers: per (layer, method) and number name, ``[count]`` values (zero outside this rank's share).
        maps: per (layer, method), ``[count, h, w]`` small maps (zero outside this rank's share).
        classes: ``[count]``, the class each sample's maps explain, plus one (zero: outside this rank's
            share, or no class: a callable target); what the focus numbers group the maps by.
    """

    count: int
    numbers: dict[tuple[MapKey, str], Tensor] = field(default_factory=dict)
    maps: dict[MapKey, Tensor] = field(default_factory=dict)
    classes: Tensor = field(default_factory=lambda: torch.zeros(0))

    def gather(self, trainer: TrainerLike, sharded: bool) -> None:
        """Sum every rank's part (the shares do not overlap), so every rank holds the whole set's values.

        Every rank calls it (a collective), unless the run has one process or is ``sharded`` (every rank
        explained the whole set).
        """
        world = int(getattr(trainer, "world_size", 1))
        if world == 1 or sharded:
            return
        parts = [*self.numbers.values(), *self.maps.values(), self.classes]
        flat = torch.cat([p.reshape(-1) for p in parts]) if parts else torch.zeros(0)
        device = getattr(trainer.strategy, "root_device", flat.device)
        summed = trainer.strategy.all_gather(flat.to(device)).sum(dim=0).cpu()
        offset = 0
        for table in (self.numbers, self.maps):
            for key, value in table.items():
                table[key] = summed[offset : offset + value.numel()].reshape(value.shape)  # type: ignore[index]
                offset += value.numel()
        self.classes = summed[offset : offset + self.classes.numel()]

    def means(self) -> dict[tuple[MapKey, str], float]:
        """Each number's mean over the samples that have it (NaN maps are left out, as in the history)."""
        return {key: usable_mean(values) for key, values in self.numbers.items()}

    def labels(self) -> Tensor | None:
        """The class each sample's maps explain ``[count]`` (long), or None when any sample has none."""
        if not len(self.classes) or bool((self.classes < 0.5).any()):
            return None
        return self.classes.round().long() - 1


def agree(trainer: TrainerLike, failure: BaseException | None) -> None:
    """Raise on every rank when any rank failed (each rank calls it: a collective), else return.

    Raises:
        BaseException: this rank's own ``failure``; else RuntimeError when another rank failed.
    """
    world = int(getattr(trainer, "world_size", 1))
    if world > 1:
        flag = torch.tensor([0.0 if failure is None else 1.0])
        device = getattr(trainer.strategy, "root_device", flag.device)
        failed = float(trainer.strategy.all_gather(flag.to(device)).sum())
    else:
        failed = 0.0 if failure is None else 1.0
    if failure is not None:
        raise failure
    if failed:
        raise RuntimeError("another rank failed to explain its share of the measured samples")


def explain_share(
    engine: CAMEngine,
    options: Any,
    trainer: TrainerLike,
    pl_module: nn.Module,
    task: str,
    source: str,
    history: MeasuredHistory,
    sharded: bool,
    like: FixedBatch,
) -> Measured:
    """Explain this rank's share of the measured set, a chunk at a time; return its per-sample values.

    Args:
        engine: the run's engine (its layers already chosen, or chosen at the first chunk).
        options: the callback's options (``measure_samples``, ``chunk_size``, ``history_size``, keys).
        trainer: the running Trainer.
        pl_module: the module explained.
        task: the fixed batch's task (the target rule).
        source: ``"val"`` or ``"train"``: the data the samples come from.
        history: the measured set's history (the references of ``change_*`` / ``shift_*``).
        sharded: every rank explains the whole set (a sharded strategy).
        like: the fixed batch: a rank without a share (fewer samples than ranks) reads the layout there.
    """
    loaders = trainer.val_dataloaders if source == "val" else trainer.train_dataloader
    loader = first_dataloader(loaders)
    if loader is None:
        raise RuntimeError(f"no {source} DataLoader to measure on")
    count = measured_count(options.measure_samples, sample_count(loader))
    world, rank = int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))
    mine = range(count) if sharded else share(count, rank, world)
    device = module_device(pl_module)
    precision = trainer.precision_plugin
    step = options.engine.chunk_size
    measured: Measured | None = None
    for start in range(mine.start, mine.stop, step):
        rows = range(start, min(start + step, mine.stop))
        batch = take_samples(loader, rows, options.keys).to(device)
        target = default_target(task, options.target, batch)
        with precision.forward_context():
            result = engine(precision.convert_input(batch.inputs), target)
        for key in result.raw:
            maps = result.normalized(*key)
            small = shrink_maps(maps.float(), history.max_side)
            references = history.references(key, rows, count)
            per_sample = sample_numbers(maps, small, references, batch.masks)
            if measured is None:
                measured = _empty(count, list(result.raw), list(per_sample), tuple(small.shape[1:]))
            measured.maps[key][rows.start : rows.stop] = small.detach().cpu()
            if result.classes is not None:
                measured.classes[rows.start : rows.stop] = result.classes.detach().float().cpu() + 1
            for name, values in per_sample.items():
                measured.numbers[(key, name)][rows.start : rows.stop] = values.detach().float().cpu()
    if measured is None:  # no share here (fewer samples than ranks): the same layout, all zeros
        measured = _layout(engine, history, count, like)
    return measured


_DRIFT = ["change_prev", "shift_prev", "change_first", "shift_first"]
_MASKED = ["energy_in_mask", "pointing_game"]


def _layout(engine: CAMEngine, history: MeasuredHistory, count: int, like: FixedBatch) -> Measured:
    """The zeros a rank with no share gathers: the keys, numbers and map sizes the others fill."""
    if not engine.layer_names:
        raise RuntimeError("no layer picked yet on a rank without measured samples; set `layer`")
    keys = [(layer, method) for layer in engine.layer_names for method in engine.method_names]
    names = [*(_DRIFT if all(history.references(k, range(0), count) for k in keys) else [])]
    names += _MASKED if like.masks is not None else []
    size = shrink_maps(torch.zeros(1, *like.inputs.shape[-2:]), history.max_side).shape[1:]
    return _empty(count, keys, names, tuple(size))


def _empty(count: int, keys: list[MapKey], names: list[str], side: tuple[int, ...]) -> Measured:
    """Zeros for ``count`` samples: numbers ``names`` and small maps of ``side`` for each of ``keys``."""
    return Measured(
        count,
        {(key, name): torch.zeros(count) for key in keys for name in names},
        {key: torch.zeros((count, *side)) for key in keys},
        torch.zeros(count),
    )
