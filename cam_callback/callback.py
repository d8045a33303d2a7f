"""The callback's logic, written once for both Lightning namespaces.

``CAMCallbackCore`` is a mixin that holds everything; :mod:`cam_callback.pl` and :mod:`cam_callback.lightning`
combine it with the ``Callback`` class of ``pytorch_lightning`` and of ``lightning.pytorch``. It only uses the
public Trainer API: ``sanity_checking``, ``current_epoch``, ``global_step``, ``loggers``, ``is_global_zero``,
``precision_plugin``, ``val_dataloaders``, ``train_dataloader``, ``enable_validation``, ``default_root_dir``.
Nothing here may issue a collective on rank 0 alone (``trainer.log_dir`` broadcasts, so it is not used).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .engine import CAMEngine, CAMResult
from .guided import saliency_to_image
from .history import MapHistory
from .layers import find_last_feature_layer, resolve_layer
from .methods import get_method
from .render import colormap_lut, heatmap_grid, history_grid, image_grid, overlay_grid
from .samples import FixedBatch, KeySpec, first_dataloader, take_fixed_batch
from .sinks import IMAGE_FORMATS, PngSink, Sink, TensorBoardSink
from .smoothing import DEFAULT_SCALES, check_scales
from .tokens import resolve_reshape

__all__ = ["CAMCallbackCore", "CAMConfigurationError"]

_SHARDED_STRATEGIES = ("FSDP", "DeepSpeed", "ModelParallel")


class CAMConfigurationError(ValueError):
    """A setting of the callback that cannot work with this model or data; raised even when not strict."""


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class CAMCallbackCore:
    """Logs class-activation maps of a fixed validation batch at every selected validation.

    After each validation that ``every_n_epochs`` selects (mid-epoch ones too; never during the sanity check;
    also under ``trainer.validate``), it computes the maps of the first ``num_samples`` validation samples
    with one forward and one backward through the LightningModule in eval mode, blends them over the images
    and logs the grids to every TensorBoard logger at ``trainer.global_step`` (PNG files under the run's log
    directory when there is none), with drift scalars. Training is untouched: weights, buffers, optimizer
    state, RNG streams, ``.grad`` and train/eval modes are the same bit for bit as without the callback.

    Args:
        layer: layer path(s) as in ``model.named_modules()`` (``"layer4"``, ``"features.-1"``). ``None``
            picks the last module whose output is a spatial feature map.
        method: CAM method name(s) (``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``, ``"hirescam"``,
            ``"layercam"``, ``"eigencam"``, ...).
        num_samples: how many validation samples to explain (the dataset's first ones).
        target: ``"label"`` (each sample's true class: the same question every epoch), ``"predicted"``, or a
            class index. ``None``: ``"label"`` when the batches carry labels, else ``"predicted"``.
        every_n_epochs: run after the validations of epochs n-1, 2n-1, ... (0-based; Lightning's
            ``check_val_every_n_epoch`` rule); 0 disables.
        alpha: heatmap opacity over the image, in [0, 1].
        colormap: any OpenCV colormap by name (``"jet"``, ``"turbo"``, ``"viridis"``, ...).
        input_key, label_key, mask_key: where to read inputs, labels and object masks (or boxes
            ``[B, 4]``) from a batch: a position in a tuple or a dict key. ``None`` fits ``(x, y[, mask])``
            and dicts with common keys (``image``, ``label``, ``mask``, ...).
        mean, std: per-channel normalisation to undo for display; ``None`` shows each image min-max scaled.
        log_heatmaps: also log a grid of the plain heatmaps.
        image_format: ``"jpeg"`` (quality 90) or ``"png"`` for the overlay and saliency grids in TensorBoard.
            Photographs make large PNGs, and TensorBoard's writer checksums every byte in pure Python: a
            16-image 224x224 overlay grid costs about 0.5 s more as PNG. Heatmap and summary grids are
            always PNG (smooth, small, and lossless so their colours map back to values).
        history_size: largest side of the maps kept for drift and the end-of-fit summary.
        tag_prefix: first part of every tag (``<prefix>/<layer>/<method>``).
        strict: re-raise errors instead of warning and skipping that validation's maps.
        reshape: turn a layer's token output into a feature map (see :class:`CAMEngine`): ``"tokens"``
            (class token dropped, square grid), ``"tokens:HxW"`` or ``"tokens-all"``.
        eigen_smooth: replace each map's weighted channel sum by its first principal component.
        aug_smooth: average each map over left-right flips and the resizes ``aug_scales`` (one engine pass
            per combination: six with the default scales).
        aug_scales: resize factors for ``aug_smooth``; ``None`` is ``[1.0, 1.1, 0.9]``. Vision transformers
            with a fixed input size need ``[1.0]``.
        chunk_size: perturbed copies per forward for ``"scorecam"`` and ``"ablationcam"`` (bounds memory).

    The guided methods (``"guided-backprop"``, ``"guided-gradcam"``) also log their signed saliency images
    under ``<prefix>_saliency/<layer>/<method>``.
    """

    def __init__(
        self,
        layer: str | list[str] | None = None,
        method: str | list[str] = "gradcam",
        num_samples: int = 16,
        target: str | int | None = None,
        every_n_epochs: int = 1,
        alpha: float = 0.5,
        colormap: str = "jet",
        input_key: int | str | None = None,
        label_key: int | str | None = None,
        mask_key: int | str | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        log_heatmaps: bool = True,
        image_format: str = "jpeg",
        history_size: int = 32,
        tag_prefix: str = "cam",
        strict: bool = False,
        reshape: str | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        aug_scales: list[float] | None = None,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        self.layers = _as_list(layer)
        self._configured_layers = list(self.layers)  # the state key; `layers` may be filled in automatically
        self.methods = [get_method(m).name for m in _as_list(method)]
        if not self.methods:
            raise ValueError("`method` must name at least one method")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be a positive int, got {num_samples!r}")
        if isinstance(target, str) and target not in ("label", "predicted"):
            raise ValueError(f"`target`: unknown {target!r}; use 'label', 'predicted', a class index or None")
        if isinstance(target, bool) or (isinstance(target, int) and target < 0):
            raise ValueError(f"`target` class index must be a non-negative int, got {target!r}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 0:
            raise ValueError(f"`every_n_epochs` must be an int >= 0, got {every_n_epochs!r}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}")
        colormap_lut(colormap, "cpu")  # raises with the valid names
        if (mean is None) != (std is None):
            raise ValueError("`mean` and `std` go together: give both or neither")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"`std` must be positive, got {std!r}")
        for flag, value in (("eigen_smooth", eigen_smooth), ("aug_smooth", aug_smooth)):
            if not isinstance(value, bool):
                raise ValueError(f"`{flag}` must be true or false, got {value!r}")
        scales = check_scales(DEFAULT_SCALES if aug_scales is None else aug_scales)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"`chunk_size` must be a positive int (copies per forward), got {chunk_size!r}")
        resolve_reshape(reshape)  # raises with the valid forms
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"`image_format` must be one of {IMAGE_FORMATS}, got {image_format!r}")
        if history_size < 1:
            raise ValueError(f"`history_size` must be >= 1, got {history_size!r}")
        self.num_samples = num_samples
        self.target = target
        self.every_n_epochs = every_n_epochs
        self.alpha = float(alpha)
        self.colormap = colormap
        self.keys: tuple[KeySpec, KeySpec, KeySpec] = (input_key, label_key, mask_key)
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.log_heatmaps = log_heatmaps
        self.image_format = image_format
        self.tag_prefix = tag_prefix.strip("/")
        self.strict = strict
        self.reshape = reshape
        self.engine_options: dict[str, Any] = {
            "reshape": reshape,
            "eigen_smooth": eigen_smooth,
            "aug_smooth": aug_smooth,
            "aug_scales": scales,
            "chunk_size": chunk_size,
        }
        self.history = MapHistory(max_side=history_size)
        self._batch: FixedBatch | None = None
        self._engine: CAMEngine | None = None
        self._sinks: list[Sink] | None = None
        self._warned: set[str] = set()
        self._validated_this_fit = False

    # ------------------------------------------------------------------ identity and state

    @property
    def state_key(self) -> str:
        """Distinct for each configuration, so two such callbacks can run side by side."""
        return self._generate_state_key(  # type: ignore[attr-defined]
            layer=self._configured_layers, method=self.methods, num_samples=self.num_samples,
            tag_prefix=self.tag_prefix,
        )

    def state_dict(self) -> dict[str, Any]:
        """The fixed batch and the maps' history, as CPU tensors (loads under ``weights_only=True``)."""
        return {
            "batch": self._batch.state_dict() if self._batch is not None else None,
            "layers": list(self.layers),
            "history": self.history.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a resumed run with the same images and history."""
        batch = state_dict.get("batch")
        self._batch = FixedBatch.from_state_dict(batch) if batch is not None else None
        if not self.layers and state_dict.get("layers"):
            self.layers = list(state_dict["layers"])
        self.history.load_state_dict(state_dict.get("history", {}))

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        """Check layer names against the model before the first training step (errors are never skipped)."""
        for layer in self.layers:
            resolve_layer(pl_module, layer)
        self._engine = None
        self._sinks = None
        self._validated_this_fit = False

    def on_validation_end(self, trainer: Any, pl_module: nn.Module) -> None:
        """Explain the fixed batch after a validation (not the sanity check)."""
        if trainer.sanity_checking:
            return
        self._validated_this_fit = True
        self._maybe_observe(trainer, pl_module, source="val")

    def on_train_epoch_end(self, trainer: Any, pl_module: nn.Module) -> None:
        """Fall back to the first training samples when the fit has no validation at all."""
        if self._validated_this_fit or trainer.enable_validation:
            return
        self._warn_once("no-val", "no validation data: explaining the first training samples instead")
        self._maybe_observe(trainer, pl_module, source="train")

    def on_fit_end(self, trainer: Any, pl_module: nn.Module) -> None:
        """Log the summary image: samples as rows, validations as columns."""
        if not trainer.is_global_zero or len(self.history) == 0:
            return
        try:
            self._log_summary(trainer)
        except Exception as error:  # noqa: BLE001 - a summary must never kill a finished run
            self._fail(error, "the summary image")

    # ------------------------------------------------------------------ the work

    def _maybe_observe(self, trainer: Any, pl_module: nn.Module, source: str) -> None:
        # Lightning's own rule (check_val_every_n_epoch): epochs n-1, 2n-1, ... counting from 0.
        if self.every_n_epochs == 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if not self._computes_here(trainer):
            return
        try:
            batch = self._fixed_batch(trainer, pl_module, source)
            self._observe(trainer, pl_module, batch)
        except CAMConfigurationError:
            raise
        except Exception as error:  # noqa: BLE001 - a long run must survive a failing visualisation
            self._fail(error, f"the maps at step {trainer.global_step}")

    def _computes_here(self, trainer: Any) -> bool:
        """Rank 0 computes alone, except under sharded strategies, where every forward gathers parameters."""
        if trainer.is_global_zero:
            return True
        return any(name in type(trainer.strategy).__name__ for name in _SHARDED_STRATEGIES)

    def _fail(self, error: Exception, what: str) -> None:
        if self.strict:
            raise error
        warnings.warn(
            f"{type(self).__name__} skipped {what}: {type(error).__name__}: {error}", RuntimeWarning, stacklevel=2
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{type(self).__name__}: {message}", UserWarning, stacklevel=3)

    def _fixed_batch(self, trainer: Any, pl_module: nn.Module, source: str) -> FixedBatch:
        device = pl_module.device  # type: ignore[attr-defined]
        if self._batch is None:
            loaders = trainer.val_dataloaders if source == "val" else trainer.train_dataloader
            loader = first_dataloader(loaders)
            if loader is None:
                raise RuntimeError(f"no {source} DataLoader to take the samples from")
            self._batch = take_fixed_batch(loader, self.num_samples, *self.keys)
        if self._batch.inputs.device != device:
            self._batch = self._batch.to(device)
        if self.target == "label" and self._batch.labels is None:
            message = "`target='label'` but the batches carry no labels; set `label_key` or use target='predicted'"
            if self.strict:
                raise CAMConfigurationError(message)
            self._warn_once("no-labels", f"{message}. Explaining the predicted class instead")
        return self._batch

    def _engine_for(self, pl_module: nn.Module, batch: FixedBatch) -> CAMEngine:
        if self._engine is None or self._engine.model is not pl_module:
            if not self.layers:
                self.layers = [find_last_feature_layer(pl_module, batch.inputs[:1])]
                self._warn_once("auto-layer", f"no `layer` given; explaining {self.layers[0]!r}")
            self._engine = CAMEngine(pl_module, self.layers, self.methods, **self.engine_options)
        return self._engine

    def _target(self, batch: FixedBatch) -> Any:
        if self.target is None:
            return batch.labels if batch.labels is not None else "predicted"
        if self.target == "label":
            return batch.labels if batch.labels is not None else "predicted"
        return self.target

    def _observe(self, trainer: Any, pl_module: nn.Module, batch: FixedBatch) -> None:
        engine = self._engine_for(pl_module, batch)
        precision = trainer.precision_plugin
        inputs = precision.convert_input(batch.inputs)
        with precision.forward_context():
            result = engine(inputs, self._target(batch))
        if not trainer.is_global_zero:
            return
        step = int(trainer.global_step)
        sinks = self._sinks_for(trainer)
        # Every pair's numbers first, so a failure while rendering cannot leave the histories out of step.
        maps = {key: result.normalized(*key) for key in result.raw}
        scalars = {key: self.history.record(*key, value, step, batch.masks) for key, value in maps.items()}
        captions = _captions(result, batch.labels)
        for (layer, method), normalized in maps.items():
            name = f"{layer}/{method}"
            overlay = overlay_grid(
                batch.inputs, normalized, alpha=self.alpha, colormap=self.colormap, mean=self.mean,
                std=self.std, captions=captions,
            )
            images = {f"{self.tag_prefix}/{name}": (overlay, self.image_format)}  # tag: (grid, encoding)
            if self.log_heatmaps:
                heatmaps = heatmap_grid(normalized, colormap=self.colormap)
                images[f"{self.tag_prefix}_heatmap/{name}"] = (heatmaps, "png")
            if (layer, method) in result.saliency:
                shown = saliency_to_image(result.saliency[(layer, method)])
                saliency = image_grid(shown, captions=captions)
                images[f"{self.tag_prefix}_saliency/{name}"] = (saliency, self.image_format)
            for sink in sinks:
                for tag, (image, encoding) in images.items():
                    sink.add_image(tag, image, step, encoding)
                for metric, value in scalars[(layer, method)].items():
                    sink.add_scalar(f"{self.tag_prefix}_drift/{name}/{metric}", value, step)
        for sink in sinks:
            sink.flush()

    def _sinks_for(self, trainer: Any) -> list[Sink]:
        if self._sinks is None:
            writers = [lg.experiment for lg in trainer.loggers if self._is_tensorboard(lg)]
            self._sinks = [TensorBoardSink(w) for w in writers]
            if not self._sinks:
                directory = _run_directory(trainer)
                where = os.path.join(directory, self.tag_prefix)
                self._warn_once("png", f"no TensorBoard logger: writing PNG files under {where}")
                self._sinks = [PngSink(directory)]
        return self._sinks

    def _is_tensorboard(self, logger: Any) -> bool:
        """A TensorBoardLogger of either Lightning namespace, or a subclass of one."""
        return any(cls.__name__ == "TensorBoardLogger" for cls in type(logger).__mro__)

    def _log_summary(self, trainer: Any) -> None:
        sinks = self._sinks_for(trainer)
        directory = _run_directory(trainer)
        for (layer, method), frames in self.history.frames().items():
            images = self._batch.inputs.cpu() if self._batch is not None else None  # the history is on the CPU
            steps = self.history.steps(layer, method)
            captions = ([""] if images is not None else []) + [f"step {s}" for s in steps]
            grid = history_grid(
                frames, colormap=self.colormap, images=images, mean=self.mean, std=self.std,
                column_captions=captions,
            )
            for sink in sinks:
                sink.add_image(f"{self.tag_prefix}_summary/{layer}/{method}", grid, int(trainer.global_step))
                sink.flush()
            path = os.path.join(directory, f"{self.tag_prefix}_summary_{layer}_{method}.png".replace("/", "_"))
            _write_png(path, grid)


def _run_directory(trainer: Any) -> str:
    """The run's log directory, read from the first logger: ``trainer.log_dir`` broadcasts, so rank 0 alone
    must not call it."""
    for logger in trainer.loggers:
        directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if directory:
            return str(directory)
    return str(trainer.default_root_dir)


def _captions(result: CAMResult, labels: Tensor | None) -> list[str] | None:
    outputs = result.outputs
    if not isinstance(outputs, Tensor) or outputs.dim() != 2:
        return None
    probs = outputs.float().softmax(dim=1)
    predicted = probs.argmax(dim=1)
    classes = result.classes if result.classes is not None else predicted
    target_prob = probs.gather(1, classes.unsqueeze(1)).squeeze(1)
    predicted_list = predicted.cpu().tolist()
    probs_list = target_prob.cpu().tolist()
    label_list = labels.cpu().tolist() if labels is not None else [None] * len(probs_list)
    return [
        (f"y={y} " if y is not None else "") + f"p={p} {q:.2f}"
        for y, p, q in zip(label_list, predicted_list, probs_list, strict=True)
    ]


def _write_png(path: str, image: Tensor) -> None:
    import cv2

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cv2.imwrite(path, image.permute(1, 2, 0).flip(-1).contiguous().numpy())
