"""The callback's logic, written once for both Lightning namespaces: it schedules, the other floors work.

``CAMCallbackCore`` is a mixin; :mod:`cam_callback.callback.pl` and :mod:`cam_callback.callback.lightning`
combine it with the ``Callback`` class of ``pytorch_lightning`` and of ``lightning.pytorch`` and declare
their namespace's classes. It decides when and where maps are made (validations, ranks, the fixed batch),
asks the engine for them, the history for drift, :mod:`~cam_callback.callback.publishing` for the records,
and hands those to the sinks. It reads only the public Trainer API (:class:`~.trainer.TrainerLike`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..capture.auto_layer import choose_layer
from ..capture.engine import CAMEngine
from ..capture.layers import resolve_layer
from ..capture.registry import get_method
from ..core.checks import check_bool, check_choice, check_float, check_int, check_str
from ..core.options import CAMOptions
from ..core.smoothing import DEFAULT_SCALES
from ..core.task_targets import ScoreTarget
from ..core.tokens import LayerReshape
from ..render import IMAGE_FORMATS, check_normalization, colormap_lut
from ..sinks import BackgroundWriter, PngSink, ScalarRecord, Sink
from .classnames import check_class_names, find_class_names
from .history import MapHistory
from .loggers import destinations
from .metrics import log_numbers, logging_step
from .preflight import CAMConfigurationError, check_first_maps
from .publishing import Display, summary_records, validation_records
from .samples import DetectionBatch, FixedBatch, KeySpec, first_dataloader, take_fixed_batch
from .tasks import default_target, explained_boxes, task_captions, task_of
from .trainer import LightningNamespace, TrainerLike

__all__ = ["CAMCallbackCore", "CAMConfigurationError"]

_TARGETS = ("label", "predicted")


def _as_list(name: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a str or a list of str, got {type(value).__name__} {value!r}")
    return [check_str(name, item) for item in value]


def _check_key(name: str, value: Any) -> KeySpec:
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"`{name}` must be a tuple position (int), a dict key (str) or None, got {value!r}")


def _check_tag_prefix(value: Any) -> str:
    """The prefix without its outer slashes: a name, or names joined by ``/``, each fit for a folder."""
    text = check_str("tag_prefix", value).strip("/")
    if not text:
        raise ValueError(
            f"`tag_prefix` must name something, got {value!r} (the tags would start with '/'); use a name "
            "such as 'cam'"
        )
    for part in text.split("/"):
        if part in ("", ".", "..") or "\\" in part or "\0" in part:
            raise ValueError(
                f"`tag_prefix`: {value!r} cannot be a folder of the PNG files ({part!r}); use plain names "
                "joined by '/', such as 'cam' or 'attention/cam'"
            )
    return text


def _check_target(target: Any) -> Any:
    if target is None or isinstance(target, ScoreTarget):
        return target
    if callable(target) and not isinstance(target, str):
        return target  # Python: any callable outputs -> scores[B]
    if isinstance(target, str):
        if target not in _TARGETS:
            raise ValueError(
                f"`target`: unknown {target!r}; use 'label', 'predicted', a class index, a target object "
                "(cam_callback.targets) or None"
            )
        return target
    return check_int("target", target, minimum=0)


class CAMCallbackCore:
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    After each validation that ``every_n_epochs`` selects (mid-epoch ones too; never during the sanity check;
    also under ``trainer.validate``), it computes the maps of the first ``num_samples`` validation samples
    with one forward and one backward through the LightningModule in eval mode, blends them over the images
    and logs the grids to every logger that takes images (:mod:`~cam_callback.callback.loggers`), at the
    step of that validation's own metrics. The drift numbers become Lightning metrics of the validation
    (:mod:`~cam_callback.callback.metrics`), so ``EarlyStopping`` and ``ModelCheckpoint`` can monitor them.
    The images are encoded and written by one background thread
    (:class:`~cam_callback.sinks.BackgroundWriter`); everything is written by the end of the fit or
    validation, also when it raises or is interrupted.
    Training is untouched: weights, buffers, optimizer
    state, RNG streams, ``.grad`` and train/eval modes are the same bit for bit as without the callback.

    When training starts it computes the maps once (logged at step 0: the untrained model's maps, the origin
    of ``change_first``); settings that cannot work fail there with :class:`CAMConfigurationError`, before
    the first training step, strict or not (see :mod:`~cam_callback.callback.preflight`). Each ``fit``,
    ``validate`` or ``test`` run takes its own samples and starts its own history, unless restored from a
    checkpoint; the history keeps at most :data:`~cam_callback.callback.history.MAX_FRAMES` frames per
    (layer, method).

    Args:
        layer: layer path(s) as in ``model.named_modules()`` (``"layer4"``, ``"features.-1"``). ``None``
            picks the last module whose output is a spatial feature map.
        method: CAM method name(s) (``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``, ``"hirescam"``,
            ``"layercam"``, ``"eigencam"``, ...).
        num_samples: how many validation samples to explain (the dataset's first ones).
        target: ``"label"`` (each sample's true class: the same question every epoch), ``"predicted"``, a
            class index, or a target object (:mod:`cam_callback.targets`, from YAML by ``class_path``; in
            Python any callable ``outputs -> scores[B]``). ``None``: ``"label"`` when the batches carry
            labels, else ``"predicted"``; for regression labels the output itself, for multi-hot labels each
            sample's highest-scoring positive label, for detection batches the box that best overlaps the
            sample's ground-truth box (see :mod:`cam_callback.callback.tasks`).
        every_n_epochs: run after the validations of epochs n-1, 2n-1, ... (0-based; Lightning's
            ``check_val_every_n_epoch`` rule); 0 disables.
        alpha: heatmap opacity over the image, in [0, 1].
        colormap: any OpenCV colormap by name (``"jet"``, ``"turbo"``, ``"viridis"``, ...).
        input_key, label_key, mask_key: where to read inputs, labels and object masks (or boxes
            ``[B, 4]``) from a batch: a position in a tuple or a dict key. ``None`` fits ``(x, y[, mask])``
            and dicts with common keys (``image``, ``label``, ``mask``, ...).
        mean, std: the normalisation to undo for display, one number per channel or one for all;
            ``None`` shows each image min-max scaled.
        log_heatmaps: also log a grid of the plain heatmaps.
        image_format: ``"jpeg"`` (quality 90) or ``"png"`` for the overlay and saliency grids in TensorBoard.
            Photographs make large PNGs (a 16-image 224x224 grid of noise-like images about 1.9 MB against
            0.35 MB). Heatmap and summary grids are always PNG (smooth, small, and lossless so their colours
            map back to values). Encoding and writing happen in a background thread either way.
        history_size: largest side of the maps kept for drift and the end-of-fit summary.
        tag_prefix: first part of every tag (``<prefix>/<layer>/<method>``): a name, or names joined by
            ``/``, each fit for a folder of the PNG files.
        strict: re-raise errors instead of warning and skipping that validation's maps (errors of the
            run's first maps stop the run either way).
        reshape: turn a layer's output into a feature map (see :class:`CAMEngine`): ``"tokens"`` (the
            model's prefix tokens dropped, square grid), ``"tokens:HxW"``, ``"tokens-all"``, ``"nhwc"``
            (channels-last outputs), or a :class:`~cam_callback.core.tokens.LayerReshape` object (from YAML
            by ``class_path``).
        eigen_smooth: replace each map's weighted channel sum by its first principal component.
        aug_smooth: average each map over left-right flips and the resizes ``aug_scales`` (one engine pass
            per combination: six with the default scales).
        aug_scales: resize factors for ``aug_smooth``; ``None`` is ``[1.0, 1.1, 0.9]``. Vision transformers
            with a fixed input size need ``[1.0]``.
        chunk_size: perturbed copies per forward for ``"scorecam"`` and ``"ablationcam"`` (bounds memory).
        class_names: names of the classes for the captions (class ``k`` is ``class_names[k]``), shortened to
            fit a tile. ``None`` reads ``classes`` from the data module or the validation dataset when they
            have it (torchvision's ``ImageFolder``, the demo's data modules), else captions show indices.
        min_display_size: inputs whose shorter side is smaller are shown enlarged by the smallest whole
            factor that reaches it (pixels repeated; maps computed at the input's size as always); 0 never.

    The guided methods (``"guided-backprop"``, ``"guided-gradcam"``) also log their signed saliency images
    under ``<prefix>_saliency/<layer>/<method>``.
    """

    namespace: ClassVar[LightningNamespace]
    """The Lightning namespace's classes, declared by each shell."""

    writer_queue_size: ClassVar[int] = 2
    """Validations whose records may wait for the background writer; the next one waits for room."""

    def __init__(
        self,
        layer: str | list[str] | None = None,
        method: str | list[str] = "gradcam",
        num_samples: int = 16,
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
    ) -> None:
        super().__init__()
        self.layers = _as_list("layer", layer)
        self._configured_layers = list(self.layers)  # the state key; `layers` may be filled in automatically
        self.methods = [get_method(m).name for m in _as_list("method", method)]
        if not self.methods:
            raise ValueError("`method` must name at least one method")
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.target = _check_target(target)
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=0)
        colormap_lut(colormap, "cpu")  # raises with the valid names
        normalization = check_normalization(mean, std)
        self.display = Display(
            tag_prefix=_check_tag_prefix(tag_prefix),
            alpha=check_float("alpha", alpha, low=0.0, high=1.0),
            colormap=colormap,
            mean=normalization[0] if normalization else None,
            std=normalization[1] if normalization else None,
            image_format=check_choice("image_format", image_format, IMAGE_FORMATS),
            log_heatmaps=check_bool("log_heatmaps", log_heatmaps),
            min_tile=check_int("min_display_size", min_display_size, minimum=0),
        )
        self.keys: tuple[KeySpec, KeySpec, KeySpec] = (
            _check_key("input_key", input_key),
            _check_key("label_key", label_key),
            _check_key("mask_key", mask_key),
        )
        self.strict = check_bool("strict", strict)
        self.options = CAMOptions(
            reshape=reshape, eigen_smooth=eigen_smooth, aug_smooth=aug_smooth,
            aug_scales=DEFAULT_SCALES if aug_scales is None else aug_scales, chunk_size=chunk_size,
        )
        self.class_names = check_class_names(class_names)
        self.history = MapHistory(max_side=check_int("history_size", history_size, minimum=1))
        self._batch: FixedBatch | None = None
        self._engine: CAMEngine | None = None
        self._sinks: list[Sink] | None = None
        self._writer: BackgroundWriter | None = None
        self._folders: list[Path] = []  # the run folders of our own, where summary PNG files go
        self._warned: set[str] = set()
        self._validated_this_fit = False
        self._auto_reshape: str | None = None  # what the automatic layer needs, when `reshape` is None
        self._checked = False  # whether this run's first maps were computed (see the preflight module)

    # ------------------------------------------------------------------ the options, as given

    @property
    def tag_prefix(self) -> str:
        """First part of every tag."""
        return self.display.tag_prefix

    @property
    def alpha(self) -> float:
        """Heatmap opacity over the image."""
        return self.display.alpha

    @property
    def colormap(self) -> str:
        """The OpenCV colour map's name."""
        return self.display.colormap

    @property
    def mean(self) -> list[float] | None:
        """Per-channel normalisation mean undone for display, or None."""
        return list(self.display.mean) if self.display.mean is not None else None

    @property
    def std(self) -> list[float] | None:
        """Per-channel normalisation standard deviation undone for display, or None."""
        return list(self.display.std) if self.display.std is not None else None

    # ------------------------------------------------------------------ identity and state

    @property
    def state_key(self) -> str:
        """Distinct for each configuration, so two such callbacks can run side by side."""
        return self._generate_state_key(  # type: ignore[attr-defined, no-any-return]
            layer=self._configured_layers, method=self.methods, num_samples=self.num_samples,
            tag_prefix=self.tag_prefix,
        )

    def _state(self) -> dict[str, Any]:
        """The fixed batch and the maps' history, as CPU tensors (loads under ``weights_only=True``)."""
        return {
            "batch": self._batch.state_dict() if self._batch is not None else None,
            "layers": list(self.layers),
            "auto_reshape": self._auto_reshape,
            "task": task_of(self._batch) if self._batch is not None else None,
            "history": self.history.state_dict(),
        }

    def _restore(self, state_dict: dict[str, Any]) -> None:
        """Continue a resumed run with the same images and history."""
        batch = state_dict.get("batch")
        kind = DetectionBatch if state_dict.get("task") == "detection" else FixedBatch
        self._batch = kind.from_state_dict(batch) if batch is not None else None
        if not self.layers and state_dict.get("layers"):
            self.layers = list(state_dict["layers"])
            self._auto_reshape = state_dict.get("auto_reshape")
        self.history.load_state_dict(state_dict.get("history", {}))

    # ------------------------------------------------------------------ the hooks (each shell calls them)

    def _setup(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Start a new run: forget the last run's samples and maps, and check the layer names.

        Lightning restores a checkpoint's callback state after ``setup``, so a resumed run gets its samples
        and history back (:meth:`_restore`). Layer errors are never skipped.
        """
        self.layers = list(self._configured_layers)
        for layer in self.layers:
            resolve_layer(pl_module, layer)
        self._close_writer()
        self._batch = None
        self.history.clear()
        self._auto_reshape = None
        self._engine = None
        self._sinks = None
        self._warned.clear()
        self._validated_this_fit = False
        self._checked = False

    def _on_train_start(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Compute the run's first maps before the first training step: a step-0 frame and the checks.

        A resumed run (its history restored) is checked the same way, but logs nothing: its last frame is
        already there. When Lightning has not loaded the validation data yet (``check_val_every_n_epoch``
        above 1 without a sanity check), the first validation the callback runs at does this instead.
        """
        if self.every_n_epochs == 0 or self._checked:
            return
        source = "val" if trainer.enable_validation else "train"
        if source == "val" and first_dataloader(trainer.val_dataloaders) is None:
            return
        if source == "train":
            self._warn_once("no-val", "no validation data: explaining the first training samples instead")
        self._check_first(trainer, pl_module, source, "when training starts", keep=self.history.recorded == 0)

    def _on_validation_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Explain the fixed batch as a validation ends (not the sanity check); its numbers become metrics."""
        if trainer.sanity_checking:
            return
        self._validated_this_fit = True
        self._maybe_observe(trainer, pl_module, source="val")

    def _on_train_epoch_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Fall back to the first training samples when the fit has no validation at all."""
        if self._validated_this_fit or trainer.enable_validation:
            return
        self._warn_once("no-val", "no validation data: explaining the first training samples instead")
        self._maybe_observe(trainer, pl_module, source="train")

    def _on_fit_end(self, trainer: TrainerLike, pl_module: nn.Module) -> None:
        """Log the summary image: samples as rows, validations as columns."""
        if trainer.is_global_zero and len(self.history) > 0:
            try:
                self._log_summary(trainer)
            except Exception as error:  # noqa: BLE001 - a summary must never kill a finished run
                self._fail(error, "the summary image")
        self._close_writer()

    def _teardown(self, trainer: TrainerLike, pl_module: nn.Module, stage: str) -> None:
        """Write whatever is still queued, at the end of every fit, validate, test or predict."""
        self._close_writer()

    def _on_exception(self, trainer: TrainerLike, pl_module: nn.Module, exception: BaseException) -> None:
        """Write whatever is still queued when the run raises or is interrupted; never raise over it."""
        self._close_writer(quiet=True)

    # ------------------------------------------------------------------ the work

    def _maybe_observe(self, trainer: TrainerLike, pl_module: nn.Module, source: str) -> None:
        self._report_writer_errors(self._writer)
        # Lightning's own rule (check_val_every_n_epoch): epochs n-1, 2n-1, ... counting from 0.
        if self.every_n_epochs == 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if not self._checked:  # the run's first maps (under validate, or no validation data at train start)
            when = f"at the validation of step {trainer.global_step}"
            log_numbers(trainer, pl_module, self._check_first(trainer, pl_module, source, when))
            return
        numbers: dict[str, float] = {}
        if self._computes_here(trainer):
            try:
                batch = self._fixed_batch(trainer, pl_module, source)
                numbers = self._observe(trainer, pl_module, batch, source)
            except CAMConfigurationError:
                raise
            except Exception as error:  # noqa: BLE001 - a long run must survive a failing visualisation
                self._fail(error, f"the maps at step {trainer.global_step}")
        log_numbers(trainer, pl_module, numbers)  # every rank: the metrics must exist on each

    def _check_first(
        self, trainer: TrainerLike, pl_module: nn.Module, source: str, when: str, *, keep: bool = True
    ) -> dict[str, float]:
        """The run's first maps, on every rank at once; any failure stops the run (strict or not).

        Returns rank 0's drift numbers (empty elsewhere), for a validation to log as its metrics.
        """
        self._checked = True
        numbers: dict[str, float] = {}

        def attempt() -> None:
            if self._computes_here(trainer):
                batch = self._fixed_batch(trainer, pl_module, source)
                numbers.update(self._observe(trainer, pl_module, batch, source, keep=keep))

        check_first_maps(trainer, attempt, when)
        return numbers

    def _computes_here(self, trainer: TrainerLike) -> bool:
        """Rank 0 computes alone, except under sharded strategies, where every forward gathers parameters."""
        return trainer.is_global_zero or isinstance(trainer.strategy, self.namespace.sharded_strategies)

    def _fail(self, error: Exception, what: str) -> None:
        if self.strict:
            raise error
        warnings.warn(
            f"{type(self).__name__} skipped {what}: {type(error).__name__}: {error}",
            RuntimeWarning,
            stacklevel=2,
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{type(self).__name__}: {message}", UserWarning, stacklevel=3)

    def _fixed_batch(self, trainer: TrainerLike, pl_module: nn.Module, source: str) -> FixedBatch:
        device = _device_of(pl_module)
        if self._batch is None:
            loaders = trainer.val_dataloaders if source == "val" else trainer.train_dataloader
            loader = first_dataloader(loaders)
            if loader is None:
                raise RuntimeError(f"no {source} DataLoader to take the samples from")
            batch = take_fixed_batch(loader, self.num_samples, *self.keys)
            self._check_labels(batch)
            if len(batch.inputs) < self.num_samples:
                data = "validation" if source == "val" else "training"
                self._warn_once(
                    "few-samples",
                    f"`num_samples` is {self.num_samples}, but the {data} data has only {len(batch.inputs)} "
                    f"samples: explaining those {len(batch.inputs)}",
                )
            self._batch = batch
        if self._batch.inputs.device != device:
            self._batch = self._batch.to(device)
        return self._batch

    def _check_labels(self, batch: FixedBatch) -> None:
        """Labels that ``target`` cannot use are an error when asked for, and a warning by default."""
        labels = batch.labels
        if self.target == "label" and labels is None:
            raise CAMConfigurationError(
                "`target='label'` but the batches carry no labels; set `label_key` to where they are, or use "
                "target='predicted'"
            )
        if labels is not None and labels.dim() == 1 and labels.is_floating_point() and self.target == "label":
            raise CAMConfigurationError(
                f"`target='label'` explains each sample's true class, but the labels are "
                f"{str(labels.dtype).removeprefix('torch.')} numbers, not class indices (regression "
                "targets?); leave `target` unset (for regression: the output itself), or use "
                "target='predicted' or a class index"
            )
        # Float labels with target=None are a task of their own (regression, multi-label): see .tasks.

    def _engine_for(self, pl_module: nn.Module, batch: FixedBatch) -> CAMEngine:
        if self._engine is None or self._engine.model is not pl_module:
            if not self.layers:
                try:
                    choice = choose_layer(pl_module, batch.inputs[:2])
                except ValueError as error:
                    raise CAMConfigurationError(str(error)) from error
                self.layers = [choice.layer]
                if self.options.reshape is None:
                    self._auto_reshape = choice.reshape
                how = f", reshape={self._auto_reshape!r}" if self._auto_reshape else ""
                message = f"no `layer` given; explaining {choice.layer!r}{how} ({choice.reason})"
                self._warn_once("auto-layer", message)
            keywords = self.options.keywords()
            if self._auto_reshape is not None:
                keywords["reshape"] = self._auto_reshape
            self._engine = CAMEngine(pl_module, self.layers, self.methods, **keywords)
        return self._engine

    def _target(self, batch: FixedBatch) -> Any:
        return default_target(task_of(batch), self.target, batch)

    def _observe(
        self, trainer: TrainerLike, pl_module: nn.Module, batch: FixedBatch, source: str = "val", *,
        keep: bool = True,
    ) -> dict[str, float]:
        """Compute, record and publish the maps of ``batch``; return the drift numbers (empty off rank 0).

        With ``keep=False`` (a resumed run's first check) the maps are drawn but neither recorded nor sent.
        """
        engine = self._engine_for(pl_module, batch)
        precision = trainer.precision_plugin
        inputs = precision.convert_input(batch.inputs)
        target = self._target(batch)
        with precision.forward_context():
            result = engine(inputs, target)
        if not trainer.is_global_zero:
            return {}
        step = logging_step(trainer, source)
        maps = {key: result.normalized(*key) for key in result.raw}
        # Every pair's numbers first, so a failure while rendering cannot leave the histories out of step;
        # a resumed run's check (keep=False) records nothing: its last frame is already in the history.
        record = self.history.record
        scalars = {key: record(*key, value, step, batch.masks) for key, value in maps.items()} if keep else {}
        names = self.class_names or find_class_names(
            getattr(trainer, "datamodule", None), first_dataloader(trainer.val_dataloaders)
        )
        task = task_of(batch)
        records = validation_records(
            result, maps, scalars, batch.inputs, batch.labels, step, self.display, names,
            texts=task_captions(task, result, batch.labels, target),
            boxes=[batch.masks, explained_boxes(result.outputs, target)] if task == "detection" else None,
        )
        if not keep:
            return {}
        self._writer_for(trainer).submit(records)
        return {record.tag: record.value for record in records if isinstance(record, ScalarRecord)}

    def _writer_for(self, trainer: TrainerLike) -> BackgroundWriter:
        if self._writer is None:
            self._writer = BackgroundWriter(self._sinks_for(trainer), self.writer_queue_size)
        return self._writer

    def _report_writer_errors(self, writer: BackgroundWriter | None, quiet: bool = False) -> None:
        """Warn (raise under ``strict``, unless ``quiet``) about what the writer failed to write."""
        for error in writer.take_errors() if writer is not None else []:
            if quiet:
                message = f"{type(self).__name__} could not write: {type(error).__name__}: {error}"
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            else:
                self._fail(error, "writing some maps of an earlier validation")

    def _close_writer(self, quiet: bool = False) -> None:
        """Write every queued record, stop the writer's thread, then report its failures."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            finally:
                self._report_writer_errors(writer, quiet)

    def _sinks_for(self, trainer: TrainerLike) -> list[Sink]:
        if self._sinks is None:
            if getattr(trainer, "fast_dev_run", False):  # its loggers are a dummy that writes nothing
                message = "fast_dev_run: the maps are computed and checked, but no file is written"
                self._warn_once("fast-dev-run", message)
                self._sinks, self._folders = [], []
                return self._sinks
            found = destinations(
                list(trainer.loggers), self.namespace, str(trainer.default_root_dir), self.tag_prefix
            )
            for note in found.notes:
                self._warn_once(note, note)
            self._sinks, self._folders = found.sinks, found.folders
        return self._sinks

    def _log_summary(self, trainer: TrainerLike) -> None:
        images = self._batch.inputs.cpu() if self._batch is not None else None  # the history is on the CPU
        frames = self.history.frames()
        steps = {key: self.history.steps(*key) for key in frames}
        records = summary_records(frames, steps, images, logging_step(trainer), self.display)
        sinks = self._sinks_for(trainer)
        files = [PngSink(folder, one_file_per_tag=True) for folder in self._folders]
        self._writer_for(trainer).submit(records, [*sinks, *files])


def _device_of(module: nn.Module) -> torch.device:
    """A LightningModule's ``device``, or that of a plain module's first parameter."""
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(module.parameters()).device

