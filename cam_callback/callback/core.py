"""When the callback explains: which hooks, which validations, which ranks (one body for both namespaces).

``CAMCallbackCore`` is a mixin; :mod:`cam_callback.callback.pl` and :mod:`cam_callback.callback.lightning`
put it before the ``Callback`` class of ``pytorch_lightning`` and of ``lightning.pytorch`` and declare their
namespace's classes. It holds the validated options (:mod:`.options`) and the run's state (:mod:`.run`),
decides when an observation happens (:mod:`.observation`: the maps, recorded and sent), checks the run's
first maps (:mod:`.preflight`), logs the numbers on every rank (:mod:`.metrics`) and closes the output
(:mod:`.loggers`). It reads the public Trainer API (:class:`~.trainer.TrainerLike`); the one internal value
it needs is read in :mod:`.trainer`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import nn
from typing_extensions import override

from ..capture.layers import resolve_layer
from ..core.errors import CAMConfigurationError
from ..core.targets import ScoreTarget
from ..core.tokens import LayerReshape
from .history import MapHistory
from .loggers import RunOutput
from .measure import MeasuredHistory
from .metrics import log_numbers, log_to_loggers
from .observation import observe
from .options import CallbackOptions, check_file_names
from .preflight import check_first_maps
from .publishing import summary_records
from .reporting import Reporter
from .run import RunState
from .samples import FixedBatch, StreamCopy, can_iterate_again, first_dataloader
from .trainer import CallbackHooks, LightningNamespace, TrainerLike, logging_step

__all__ = ["CAMCallbackCore"]

_NO_VALIDATION = "no validation data: explaining the first training samples instead"


class CAMCallbackCore(CallbackHooks):
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    After each validation that ``every_n_epochs`` selects (mid-epoch ones too; never during the sanity check;
    also under ``trainer.validate``), it computes the maps of the first ``num_samples`` validation samples
    with one forward and one backward through the LightningModule in eval mode, blends them over the images
    and logs the grids to every logger that takes images, at the step of that validation's own metrics; the
    drift numbers become Lightning metrics of the validation. When training starts it computes the maps once
    (the step-0 frame); settings that cannot work fail there with
    :class:`~cam_callback.core.errors.CAMConfigurationError`, before the first training step. Training is
    untouched: weights, buffers, optimizer state, RNG streams, ``.grad`` and train/eval modes are the same bit
    for bit as without the callback.

    Every option is described in the README's option table ("Options"); ``layer`` and ``method`` may be
    given by position, the others by keyword. They are validated once into :attr:`options`.
    """

    namespace: ClassVar[LightningNamespace]
    """The Lightning namespace's classes, declared by each shell."""

    writer_queue_size: ClassVar[int] = 2
    """Validations whose output may wait for the background writer; the next one waits for room."""

    def __init__(
        self,
        layer: str | list[str] | None = None,
        method: str | list[str] = "gradcam",
        *,
        num_samples: int = 16,
        measure_samples: int | Literal["all"] | None = None,
        target: str | int | ScoreTarget | None = None,
        every_n_epochs: int = 1,
        alpha: float = 0.5,
        colormap: str = "jet",
        input_key: int | str | None = None,
        label_key: int | str | None = None,
        mask_key: int | str | None = None,
        mean: float | list[float] | None = None,
        std: float | list[float] | None = None,
        log_heatmaps: bool = True,
        image_format: str = "jpeg",
        history_size: int = 32,
        tag_prefix: str = "cam",
        strict: bool = False,
        reshape: str | LayerReshape | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        aug_scales: list[float] | None = None,
        chunk_size: int = 64,
        class_names: list[str] | None = None,
        min_display_size: int = 128,
        alarm: bool = True,
        train_samples: int = 0,
        faithfulness: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        self.options = CallbackOptions.from_arguments(
            layer=layer, method=method, num_samples=num_samples, measure_samples=measure_samples,
            target=target, every_n_epochs=every_n_epochs, alpha=alpha, colormap=colormap, input_key=input_key,
            label_key=label_key, mask_key=mask_key, mean=mean, std=std, log_heatmaps=log_heatmaps,
            image_format=image_format, history_size=history_size, tag_prefix=tag_prefix, strict=strict,
            reshape=reshape, eigen_smooth=eigen_smooth, aug_smooth=aug_smooth, aug_scales=aug_scales,
            chunk_size=chunk_size, class_names=class_names, min_display_size=min_display_size, alarm=alarm,
            train_samples=train_samples, faithfulness=faithfulness,
        )
        self._run = self._new_run()

    def _new_run(self) -> RunState:
        reporter = Reporter(type(self).__name__, self.options.strict, self.namespace.info)
        output = RunOutput(self.namespace, self.options.tag_prefix, reporter, self.writer_queue_size)
        history = MapHistory(max_side=self.options.history_size)
        measured = MeasuredHistory(self.options.history_size) if self.options.measure_samples else None
        return RunState(history, reporter, output, layers=self.options.layers, measured=measured)

    # ------------------------------------------------------------------ what a user may read

    @property
    def history(self) -> MapHistory:
        """This run's maps of past validations (bounded), from which the drift numbers come."""
        return self._run.history

    @property
    def fixed_batch(self) -> FixedBatch | None:
        """The samples this run explains, once taken (on the model's device), or None."""
        return self._run.batch

    @property
    def layers(self) -> list[str]:
        """The layers explained: as configured, or, with ``layer=None``, as picked at the first maps."""
        return list(self._run.layers)

    @property
    def state_key(self) -> str:
        """Distinct for each configuration, so two such callbacks can run side by side."""
        key = dict(
            layer=list(self.options.layers), method=list(self.options.methods),
            num_samples=self.options.num_samples, tag_prefix=self.options.tag_prefix,
        )
        if self.options.measure_samples is not None:  # absent otherwise: older checkpoints keep their key
            key["measure_samples"] = self.options.measure_samples
        return f"{type(self).__qualname__}{key!r}"

    @override
    def state_dict(self) -> dict[str, Any]:
        """The fixed batch, the picked layer and the history, as CPU tensors (``weights_only`` loads)."""
        return self._run.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a resumed run with the same images, layers and history."""
        self._run.load_state_dict(state_dict)

    # ------------------------------------------------------------------ the hooks

    @override
    def setup(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Start a new run: forget the last run's samples and maps (a checkpoint restores them after this)."""
        self._run.output.close()
        self._run = self._new_run()
        # A misspelled layer fails here, before anything is written.
        names = [resolve_layer(pl_module, layer)[0] for layer in self.options.layers]
        try:
            check_file_names(self.options.display, names, self.options.methods)
        except ValueError as error:
            raise CAMConfigurationError(str(error)) from error
        self._refuse_twins(trainer, pl_module)

    def _written_names(self, pl_module: nn.Module) -> set[str]:
        """Every tag and metric name this callback writes, its layers resolved to their canonical names."""
        layers = [resolve_layer(pl_module, layer)[0] for layer in self.options.layers] or ["<picked layer>"]
        display = self.options.display
        return {name for layer in layers for method in self.options.methods
                for name in display.namespaces((layer, method))}

    def _refuse_twins(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Refuse another callback of ours in the run that would write a tag or number this one writes."""
        mine = self._written_names(pl_module)
        for other in getattr(trainer, "callbacks", None) or []:
            if other is self or not isinstance(other, CAMCallbackCore):
                continue
            try:
                shared = sorted(mine & other._written_names(pl_module))
            except (ValueError, TypeError):  # its own setup names its bad layer
                continue
            if shared:
                raise CAMConfigurationError(
                    f"two callbacks would write the same tags and numbers ({', '.join(shared[:3])}"
                    f"{', ...' if len(shared) > 3 else ''}): {self._describe()} and {other._describe()}; "
                    "their images would mix under one tag and their numbers merge into one. Give one of "
                    "them another `tag_prefix`, or explain both configurations with one callback"
                )

    def _describe(self) -> str:
        """The callback's class and the options that decide its tags, for messages."""
        options = self.options
        layers = list(options.layers) if len(options.layers) != 1 else options.layers[0]
        methods = list(options.methods) if len(options.methods) != 1 else options.methods[0]
        return (
            f"{type(self).__name__}(layer={layers or None!r}, method={methods!r}, "
            f"num_samples={options.num_samples}, tag_prefix={options.tag_prefix!r})"
        )

    @override
    def on_train_start(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Compute the run's first maps before the first training step: a step-0 frame and the checks.

        A resumed run (its history restored) is checked the same way but logs nothing: its last frame is
        there. When Lightning has not loaded the validation data yet (``check_val_every_n_epoch`` above 1
        without a sanity check), the first validation the callback runs at does this instead.
        """
        if self.options.every_n_epochs == 0 or self._run.checked:
            return
        source = "val" if trainer.enable_validation else "train"
        if source == "val" and first_dataloader(trainer.val_dataloaders) is None:
            return
        if self._run.batch is None and self._one_shot(trainer, source):
            return  # the samples come from the loop's own first batches: checked at the first observation
        if source == "train":
            self._run.reporter.once("no-val", _NO_VALIDATION)
        keep = self._run.history.recorded == 0
        numbers = self._check_first(
            trainer, pl_module, source, "when training starts", keep=keep, judge=False, epoch=-1
        )
        last = self._run.history.last_step
        if trainer.is_global_zero and last is not None:
            log_to_loggers(trainer, numbers, last)  # the step-0 frame's numbers, focus too

    @override
    def on_validation_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Explain the fixed batch as a validation ends (not the sanity check); its numbers become metrics."""
        if trainer.sanity_checking:
            return
        self._run.validated = True
        self._maybe_observe(trainer, pl_module, source="val")

    @override
    def on_validation_batch_start(
        self, trainer: TrainerLike, pl_module: nn.Module, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Copy the first batches of a one-shot validation stream (the loop's own), for the fixed batch."""
        if dataloader_idx == 0 and self._run.batch is None and self._one_shot(trainer, "val"):
            self._copy(batch)

    @override
    def on_train_batch_start(
        self, trainer: TrainerLike, pl_module: nn.Module, batch: Any, batch_idx: int
    ) -> None:
        """Copy the first batches of a one-shot training stream when the fit has no validation."""
        if not trainer.enable_validation and self._run.batch is None and self._one_shot(trainer, "train"):
            self._copy(batch)

    def _copy(self, batch: Any) -> None:
        if self._run.stream is not None and self.options.every_n_epochs:
            self._run.stream.add(batch)

    @override
    def on_train_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Fall back to the first training samples when the fit has no validation at all."""
        if self._run.validated or trainer.enable_validation:
            return
        self._run.reporter.once("no-val", _NO_VALIDATION)
        self._maybe_observe(trainer, pl_module, source="train")

    @override
    def on_fit_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Log the summary image (samples as rows, validations as columns), then write everything queued."""
        run = self._run
        if trainer.is_global_zero and len(run.history) > 0:
            try:
                images = run.batch.inputs.cpu() if run.batch is not None else None  # the history's device
                frames = run.history.frames()
                steps = {key: run.history.steps(*key) for key in frames}
                epochs = {key: run.history.epochs(*key) for key in frames}
                records = summary_records(
                    frames, steps, images, logging_step(trainer), self.options.display, epochs=epochs
                )
                run.output.summary(trainer, records)
            except Exception as error:  # noqa: BLE001 - a summary must never kill a finished run
                run.reporter.skip(error, "the summary image")
        run.output.close()

    @override
    def teardown(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Write whatever is still queued, at the end of every fit, validate, test or predict."""
        self._run.output.close()

    @override
    def on_exception(self, trainer: TrainerLike, pl_module: nn.Module, exception: BaseException) -> None:
        """Write whatever is still queued when the run raises or is interrupted; never raise over it."""
        self._run.output.close(quiet=True)

    # ------------------------------------------------------------------ when, and on which ranks

    def _maybe_observe(self, trainer: TrainerLike, pl_module: nn.Module, source: str) -> None:
        run = self._run
        if trainer.is_global_zero:
            run.output.report()
        # Lightning's own rule (check_val_every_n_epoch): epochs n-1, 2n-1, ... counting from 0.
        every = self.options.every_n_epochs
        if every == 0 or (trainer.current_epoch + 1) % every:
            return
        if not run.checked:  # the run's first maps (under validate, or no validation data at train start)
            when = f"at the validation of step {trainer.global_step}"
            numbers = self._check_first(trainer, pl_module, source, when)
            self._tell_names(numbers)
            log_numbers(trainer, pl_module, numbers)
            return
        numbers = {}
        if self._computes_here(trainer):
            try:
                numbers = observe(self._run, self.options, trainer, pl_module, source, **self._roles(trainer))
            except CAMConfigurationError:
                raise
            except Exception as error:  # noqa: BLE001 - a long run must survive a failing visualisation
                run.reporter.skip(error, f"the maps at step {trainer.global_step}")
        self._tell_names(numbers)
        log_numbers(trainer, pl_module, numbers)  # every rank: the metrics must exist on each

    def _tell_names(self, numbers: dict[str, float]) -> None:
        """Say once, on rank 0, the names of the numbers a validation logs (what a monitor must name)."""
        if not numbers:
            return
        parts: dict[str, list[str]] = {}  # "<prefix>_drift/" -> "<layer>/<method>" pairs, and the names
        pairs: dict[str, dict[str, None]] = {}
        for name in numbers:  # <prefix>_drift/<layer>/<method>/<number>: layer and method hold no "/"
            head, layer, method, number = name.rsplit("/", 3)
            pairs.setdefault(head, {})[f"{layer}/{method}"] = None
            parts.setdefault(head, [])
            if number not in parts[head]:
                parts[head].append(number)
        said = "; ".join(
            f"{head}/<layer>/<method>/{{{','.join(parts[head])}}} for <layer>/<method> in {', '.join(found)}"
            for head, found in pairs.items()
        )
        self._run.reporter.tell("names", f"each validation logs the numbers {said}")

    def _check_first(
        self, trainer: TrainerLike, pl_module: nn.Module, source: str, when: str, *, keep: bool = True,
        judge: bool = True, epoch: int | None = None,
    ) -> dict[str, float]:
        """The run's first maps, on every rank at once; any failure stops the run (strict or not).

        Returns rank 0's numbers (empty elsewhere), for a validation to log as its metrics.
        """
        self._run.checked = True
        numbers: dict[str, float] = {}

        def attempt() -> None:
            if self._computes_here(trainer):
                roles = self._roles(trainer)
                numbers.update(
                    observe(
                        self._run, self.options, trainer, pl_module, source, keep=keep, draw_now=True,
                        judge=judge, epoch=epoch, **roles,
                    )
                )

        check_first_maps(trainer, attempt, when)
        return numbers

    def _one_shot(self, trainer: TrainerLike, source: str) -> bool:
        """Whether ``source``'s DataLoader is a one-shot stream (asked once a run); say so once, and how.

        From such a stream the fixed batch is copied from the loop's own first batches
        (:class:`~.samples.StreamCopy`), so taking it never takes a sample from the loop.
        """
        run = self._run
        if source not in run.one_shot:
            loaders = trainer.val_dataloaders if source == "val" else trainer.train_dataloader
            loader = first_dataloader(loaders)
            if loader is None:  # not loaded yet: ask again later
                return False
            run.one_shot[source] = not can_iterate_again(loader)
            if run.one_shot[source]:
                run.stream = StreamCopy(self.options.num_samples, self.options.keys[0])
                data = "validation" if source == "val" else "training"
                run.reporter.once(
                    "one-shot",
                    f"the {data} DataLoader reads a one-shot stream (its IterableDataset hands out one "
                    f"shared iterator), so taking samples from it would take them from the {data} loop: "
                    f"explaining the first {self.options.num_samples} samples the {data} loop itself reads "
                    "(copies of its first batches, from the first validation on) instead",
                )
        return run.one_shot[source]

    def _computes_here(self, trainer: TrainerLike) -> bool:
        """Whether this rank calls :func:`observe`.

        Rank 0 alone, except under sharded strategies, where every forward gathers parameters, and with
        ``measure_samples``, where every rank explains its share of the measured set.
        """
        return self.options.measure_samples is not None or trainer.is_global_zero or self._sharded(trainer)

    def _sharded(self, trainer: TrainerLike) -> bool:
        return isinstance(trainer.strategy, self.namespace.sharded_strategies)

    def _roles(self, trainer: TrainerLike) -> dict[str, bool]:
        """What this rank does in :func:`observe`: explain the shown batch; explain the whole measured set."""
        sharded = self._sharded(trainer)
        return {"show": trainer.is_global_zero or sharded, "sharded": sharded}
