"""The CAM engine: every (layer, method) map of a batch from one forward and one backward pass.

The gradient family, Eigen-CAM and KPCA-CAM share that pass. Methods that need more add their own passes,
run by their modules: Score-CAM and Ablation-CAM (:mod:`cam_callback.capture.perturbation`), Guided
Backpropagation and Guided Grad-CAM (:mod:`cam_callback.capture.guided`), Shapley-CAM and Finer-CAM (a
second backward through the shared forward, :mod:`cam_callback.capture.second_backward`), FullGrad
(:mod:`cam_callback.capture.fullgrad`), augmentation smoothing (:mod:`cam_callback.core.smoothing`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.errors import CAMConfigurationError, caller_stacklevel
from ..core.maps import normalize_maps, upsample_maps
from ..core.options import CAMOptions
from ..core.smoothing import DEFAULT_SCALES, average_over_augmentations
from ..core.targets import Target, finer_scores, select_scores
from ..core.tokens import ActivationReshape, TokenGrid, resolve_reshape
from .auto_layer import LayerChoice, choose_layer
from .diagnostics import warn_if_all_zero, warn_if_not_finite
from .fullgrad import FullGradMethod
from .guided import GuidedMethod, guided_backprop, saliency_magnitude
from .hooks import LayerCapture, explaining, uncompiled, unwrap_compiled
from .layers import resolve_layer
from .layouts import prefix_tokens, warn_if_channels_last
from .probe import LayerProbe
from .registry import CAMMethod, get_method
from .second_backward import FinerMethod, ShapleyMethod, hessian_products

__all__ = ["CAMEngine", "CAMResult", "compute_cam"]

RawMaps = dict[tuple[str, str], Tensor]
LayerSpec = str | nn.Module | Sequence[str | nn.Module]
"""One layer or several: dotted paths into ``model.named_modules()`` or the modules themselves."""


@dataclass
class CAMResult:
    """What one engine call produced, all detached and on the inputs' device.

    Attributes:
        raw: ``{(layer, method): [B, h, w]}`` float32 maps at each layer's resolution, after the ReLU. For
            FullGrad it is ``[B, H, W]`` at the input's resolution (the same under every layer); for the
            guided methods ``[B, H, W]`` at the input's resolution too: the largest absolute value of
            ``saliency`` over channels. A sample whose target score is NaN or Inf has all-NaN maps (with a
            warning that names the samples).
        outputs: the model's output for the batch (detached, as the model returned it).
        classes: the target class of each sample ``[B]``, or None when ``target`` was a callable.
        scores: the target score of each sample ``[B]`` (float32, pre-softmax).
        input_size: ``(H, W)`` of the inputs.
        saliency: ``{(layer, method): [B, C, H, W]}`` signed float32 images of the guided methods
            (``"guided-backprop"``, which does not depend on the layer, is listed under every layer); show
            them with :func:`cam_callback.render.saliency_to_image`. Empty for the other methods.
    """

    raw: dict[tuple[str, str], Tensor]
    outputs: Any
    classes: Tensor | None
    scores: Tensor
    input_size: tuple[int, int]
    saliency: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    _normalized: dict[tuple[str, str], Tensor] = field(default_factory=dict, repr=False)

    def normalized(self, layer: str, method: str) -> Tensor:
        """The ``[B, H, W]`` map upsampled to the input's size and normalised to [0, 1] per image."""
        key = (layer, method)
        if key not in self._normalized:
            self._normalized[key] = normalize_maps(upsample_maps(self.raw[key], self.input_size))
        return self._normalized[key]


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _as_feature_map(name: str, tensor: Tensor, reshape: ActivationReshape | None) -> Tensor:
    if reshape is not None:
        tensor = reshape(tensor)
    if tensor.dim() != 4:
        raise ValueError(
            f"`layer` {name!r} gives shape {tuple(tensor.shape)}, not a [B, C, h, w] feature map; pick a "
            "convolutional layer or pass `reshape` to turn its output into one"
        )
    return tensor.float()


def _optional_feature_map(
    name: str, tensor: Tensor | None, reshape: ActivationReshape | None
) -> Tensor | None:
    return None if tensor is None else _as_feature_map(name, tensor, reshape)


def _not_reached(names: list[str]) -> str:
    """Why no gradient came back to the layer(s) ``names``, and what would work."""
    return (
        f"`layer` {', '.join(map(repr, names))}: the target scores do not depend on the layer's output as "
        "autograd sees it. If the layer runs inside torch.utils.checkpoint with use_reentrant=True, the "
        "reentrant checkpoint hides the layer's output from autograd: use use_reentrant=False, or choose a "
        "`layer` outside the checkpointed part. Otherwise the forward detaches (or runs under no_grad) "
        "after the layer, or does not use its output: choose a layer whose output reaches the scores"
    )


def _nan_where_scores_are(scores: Tensor, raw: RawMaps) -> RawMaps:
    """Each map of a sample whose target score is NaN or Inf made all NaN: it explains no number."""
    bad = ~scores.reshape(len(scores), -1).isfinite().all(dim=1)  # never read on the host: no wait
    return {
        key: maps.masked_fill(bad.to(maps.device).view(-1, *[1] * (maps.dim() - 1)), float("nan"))
        for key, maps in raw.items()
    }


def _per_copy_target(classes: Tensor | None, target: Target) -> Tensor | Callable[[Any], Tensor]:
    """What perturbed copies are scored by: the classes the main pass chose, or the callable target."""
    if classes is not None:
        return classes
    if not callable(target) or isinstance(target, (str, Tensor)):
        raise TypeError(f"`target`: expected classes or a callable, got {type(target).__name__}")
    return target


class CAMEngine:
    """Computes several CAM methods at several layers of one model from a single forward and backward.

    Set it up once, call it on each batch. Only the part of the network after the earliest target layer is
    recorded for backward, and gradients are taken with ``torch.autograd.grad`` on the captured activations,
    so parameter ``.grad`` is never touched. The model is explained in eval mode and left exactly as found
    (train/eval flags, buffers, gradients, RNG state, hooks), also when its forward raises. Works inside
    ``torch.no_grad()`` and ``torch.inference_mode()``, and under autocast; maps are float32.

    Cost per call: one forward and (for gradient methods) one backward, shared by the gradient methods,
    Eigen-CAM and KPCA-CAM; Shapley-CAM records the shared backward's graph and adds one double backward
    through the part after the layer, Finer-CAM one backward to the layers; FullGrad one forward and one
    backward to the input (the whole graph recorded); plus ``ceil(B * K / chunk_size)`` forwards per layer for
    Score-CAM (``K`` the layer's channels) and, for Ablation-CAM, about ``B * ceil(K / chunk_size)`` forwards
    of one image whose copies only run the part after the layer (see
    :func:`cam_callback.capture.perturbation.ablationcam_weights`); plus one forward and one backward to the
    input, with the whole graph recorded, for the guided methods together; all of it times the number of
    augmentations with ``aug_smooth`` (the guided pass excepted).

    A ``torch.compile`` wrapper is explained through the module it wraps (``_orig_mod``), and a compiled
    model always runs eagerly here (:func:`~cam_callback.capture.hooks.uncompiled`): explaining never
    compiles, nor changes what the training graph compiles to.

    Args:
        model: the network to explain.
        layer: one layer or several, each a dotted path (``"layer4"``, ``"features.-1"``) or the module.
            ``None`` picks one at the first call, from one forward of two of its samples (the last module
            with a spatial output, or for known transformers, detectors and segmenters a proper layer and
            ``reshape``; see :mod:`~cam_callback.capture.auto_layer`), with a warning that names it; the
            choice is then ``engine.choice``. A model where none can be picked raises
            :class:`~cam_callback.core.errors.CAMConfigurationError` naming candidates.
        method: one method name or several (see :func:`cam_callback.method_names`).
        reshape: turns a layer's output into ``[B, C, h, w]``: a callable, or for token outputs
            ``[B, P+N, C]`` the strings ``"tokens"`` (square grid; ``P`` is the model's
            ``num_prefix_tokens`` when the layer sits in a module that declares it, else 1) or
            ``"tokens:HxW"``, or ``"nhwc"`` for channels-last outputs (see
            :func:`cam_callback.core.tokens.resolve_reshape`). Without it, a 4-D output that looks
            channels-last gets a warning.
        eigen_smooth: replace each map's weighted sum over channels by the first principal component of the
            weighted activations (see :func:`cam_callback.core.methods.combine`); no effect on Eigen-CAM,
            Eigen-Grad-CAM, KPCA-CAM, FullGrad and Guided Backpropagation.
        aug_smooth: average each map over left-right flips and the resizes ``aug_scales`` of the inputs
            (see :mod:`cam_callback.core.smoothing`); the guided saliency itself is not averaged, Guided
            Grad-CAM uses the averaged Grad-CAM map.
        aug_scales: resize factors for ``aug_smooth``; 1.0 is always included.
        chunk_size: perturbed copies per forward for Score-CAM and Ablation-CAM; bounds their memory.

    The five keyword options are validated together as a :class:`~cam_callback.core.options.CAMOptions`
    (``engine.options``; :meth:`from_options` takes one already made).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        method: str | Sequence[str] = "gradcam",
        *,
        reshape: ActivationReshape | str | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        aug_scales: Sequence[float] = DEFAULT_SCALES,
        chunk_size: int = 64,
    ) -> None:
        options = CAMOptions(reshape, eigen_smooth, aug_smooth, aug_scales, chunk_size)
        self._setup(model, layer, method, options)

    @classmethod
    def from_options(
        cls, model: nn.Module, layer: LayerSpec | None, method: str | Sequence[str], options: CAMOptions
    ) -> CAMEngine:
        """An engine with options already validated (the callback holds them as a :class:`CAMOptions`)."""
        engine = cls.__new__(cls)
        engine._setup(model, layer, method, options)
        return engine

    def _setup(
        self, model: nn.Module, layer: LayerSpec | None, method: str | Sequence[str], options: CAMOptions
    ) -> None:
        layers = [layer] if isinstance(layer, (str, nn.Module)) else list(layer or [])
        methods = [method] if isinstance(method, str) else list(method)
        if layer is not None and not layers:
            raise ValueError("`layer` must name at least one layer (or be None to pick one)")
        if not methods:
            raise ValueError("`method` must name at least one method")
        self.options = options
        self.model = unwrap_compiled(model)
        self.methods: list[CAMMethod] = list({m.name: m for m in map(get_method, methods)}.values())
        self.needs_gradients = any(m.needs_gradients for m in self.methods)
        self.needs_hessian = any(isinstance(m, ShapleyMethod) for m in self.methods)
        self.needs_contrast = any(isinstance(m, FinerMethod) for m in self.methods)
        self.layers: dict[str, nn.Module] = {}
        self.choice: LayerChoice | None = None
        self._reshape: ActivationReshape | None = None
        self._layout_checked: set[str] = set()
        self._gradient_reached: dict[str, Tensor] = {}  # per layer, last pass: a gradient anywhere (0-d bool)
        self._unchecked: tuple[Tensor | None, RawMaps] = (None, {})  # last pass: scores, maps before NaN-ing
        if layers:
            self._use_layers(layers, options.reshape_fn)

    def _use_layers(self, layers: Sequence[str | nn.Module], reshape: ActivationReshape | None) -> None:
        self.layers = dict(resolve_layer(self.model, layer) for layer in layers)
        if isinstance(reshape, TokenGrid):  # "tokens": the model's class and register tokens go first
            reshape = reshape.for_model(prefix_tokens(self.model, next(iter(self.layers))))
        self._reshape = reshape

    def _pick_layer(self, inputs: Tensor) -> None:
        """Pick the layer from one forward of two samples (``layer=None``), and say which, once."""
        try:
            choice = choose_layer(self.model, inputs[:2])
        except ValueError as error:
            raise CAMConfigurationError(str(error)) from error
        self.choice = choice
        reshape = self.options.reshape_fn
        if reshape is None and choice.reshape is not None:
            reshape = resolve_reshape(choice.reshape)
        self._use_layers([choice.layer], reshape)
        how = f", reshape={choice.reshape!r}" if choice.reshape and self.options.reshape is None else ""
        message = f"no `layer` given; explaining {choice.layer!r}{how} ({choice.reason})"
        warnings.warn(message, UserWarning, stacklevel=caller_stacklevel())

    @property
    def reshape(self) -> ActivationReshape | None:
        """The resolved ``reshape`` function (with the model's prefix tokens filled in), or None."""
        return self._reshape

    @property
    def layer_names(self) -> list[str]:
        """Canonical names of the target layers, in order (with ``layer=None``, empty until picked)."""
        return list(self.layers)

    @property
    def method_names(self) -> list[str]:
        """Names of the methods computed, in the order given."""
        return [m.name for m in self.methods]

    def __call__(self, inputs: Tensor, target: Target = "predicted") -> CAMResult:
        """Explain ``inputs`` (``[B, C, H, W]``, on the model's device) for ``target``.

        ``target``: ``"predicted"`` (the argmax of the output), a class index for all samples, one class per
        sample (sequence or 1-D tensor), or a callable ``outputs -> scores[B]``. The maps come from
        :meth:`compute`; then NaN or Inf in the scores or maps is named (those samples' maps are NaN), and
        every (layer, method) whose maps are zero for all samples gets a warning that says why (these checks
        read the device's results, so they wait for them).
        """
        result = self.compute(inputs, target)
        (scores, unmasked), self._unchecked = self._unchecked, (None, {})  # held only until read
        if scores is not None:
            warn_if_not_finite(scores, unmasked)
        reached, self._gradient_reached = self._gradient_reached, {}  # held only until read
        zero_gradients = {name for name, anything in reached.items() if not bool(anything)}
        guided = {m.name for m in self.methods if isinstance(m, GuidedMethod)}
        warn_if_all_zero(self.model, result.raw, guided, zero_gradients)
        return result

    def compute(self, inputs: Tensor, target: Target = "predicted") -> CAMResult:
        """The maps of ``inputs`` for ``target``, as :meth:`__call__` computes them, without its checks.

        On a CUDA device the gradient family's maps are queued without waiting for the device (no host
        synchronisation) when ``target`` is ``"predicted"``, a class index or a callable whose scores need
        none; per-sample classes are checked against the output's size, which waits once.
        """
        if not isinstance(inputs, Tensor) or inputs.dim() < 3:
            raise ValueError("`inputs` must be a batched image tensor [B, C, H, W]")
        with uncompiled(self.model):  # never a (re)compilation of a compiled model's training graph
            return self._explain(inputs, target)

    def _explain(self, inputs: Tensor, target: Target) -> CAMResult:
        if not self.layers:
            self._pick_layer(inputs)
        input_size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        with explaining(self.model):
            if inputs.is_inference():
                inputs = inputs.clone()  # a normal tensor, usable outside inference mode
            dtype = _model_dtype(self.model)
            if dtype is not None and inputs.is_floating_point() and inputs.dtype != dtype:
                inputs = inputs.to(dtype)
            outputs, scores, classes, raw = self._maps(inputs, target)
            fixed: Target = classes if classes is not None else target  # augmented passes keep the classes
            if self.options.aug_smooth:
                raw = average_over_augmentations(
                    lambda x: self._maps(x, fixed)[3], inputs, raw, self.options.aug_scales
                )
            saliency = self._guided(inputs, fixed, raw)
            raw = {(name, m.name): raw[(name, m.name)] for name in self.layers for m in self.methods}
            self._unchecked = (scores.detach(), raw)  # read by __call__'s checks, after the pass
            raw = _nan_where_scores_are(scores.detach(), raw)
            detached = outputs.detach() if isinstance(outputs, Tensor) else outputs
            return CAMResult(raw, detached, classes, scores.detach().float(), input_size, saliency)

    def _maps(self, inputs: Tensor, target: Target) -> tuple[Any, Tensor, Tensor | None, RawMaps]:
        """One pass: the forward (and backward) the layer methods share, then the perturbation methods.

        Returns ``(outputs, scores, classes, raw)``; ``raw`` lacks the guided methods without a layer part.
        Autograd is off when the pass starts (the earliest target layer turns it on) and when it ends.
        """
        with torch.no_grad():
            with LayerCapture(self.layers, track_gradients=self.needs_gradients) as capture:
                outputs = self.model(inputs)
            missing = [name for name in self.layers if name not in capture.activations]
            if missing:
                raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
            scores, classes = select_scores(outputs, target)
            activations = [capture.activations[name] for name in self.layers]
            gradients: Sequence[Tensor | None] = [None] * len(activations)
            hessian: Sequence[Tensor | None] = [None] * len(activations)
            contrast: Sequence[Tensor | None] = [None] * len(activations)
            if self.needs_gradients:
                if not scores.requires_grad:
                    raise RuntimeError(_not_reached(list(self.layers)))
                gradients, hessian, contrast = self._backward(outputs, scores, classes, activations)
            fixed = _per_copy_target(classes, target)
            raw: RawMaps = {}
            self._gradient_reached = {}
            layers = zip(self.layers, activations, gradients, strict=True)
            for index, (name, activation, gradient) in enumerate(layers):
                if self.reshape is None and name not in self._layout_checked:
                    self._layout_checked.add(name)
                    warn_if_channels_last(name, self.layers[name], activation)
                if self.needs_gradients and gradient is None:
                    raise RuntimeError(_not_reached([name]))
                spatial_gradient = None
                if gradient is not None:
                    spatial_gradient = _as_feature_map(name, gradient, self.reshape)
                if spatial_gradient is not None:  # read after the pass: none may reach (only a class token)
                    self._gradient_reached[name] = spatial_gradient.any()
                probe = LayerProbe(
                    self.model, inputs, self.layers[name],
                    _as_feature_map(name, activation.detach(), self.reshape),
                    fixed, scores.detach().float(), self.reshape, self.options.chunk_size,
                    gradients=spatial_gradient,
                    eigen_smooth=self.options.eigen_smooth,
                    hessian_product=_optional_feature_map(name, hessian[index], self.reshape),
                    contrast_gradients=_optional_feature_map(name, contrast[index], self.reshape),
                )
                for method in self.methods:
                    layer_map = method.layer_map(probe)
                    if layer_map is not None:
                        raw[(name, method.name)] = layer_map
            for method in self.methods:
                if isinstance(method, FullGradMethod):  # its own pass, the same map under every layer
                    batch_map = method.batch_map(self.model, inputs, fixed)
                    raw.update({(name, method.name): batch_map for name in self.layers})
        return outputs, scores, classes, raw

    def _backward(
        self, outputs: Any, scores: Tensor, classes: Tensor | None, activations: list[Tensor]
    ) -> tuple[list[Tensor | None], list[Tensor | None], list[Tensor | None]]:
        """The shared backward to the layers, and the second ones Shapley-CAM and Finer-CAM ask for.

        Returns ``(gradients, hessian products, contrast gradients)`` per layer, detached (None where not
        asked for, or where a gradient does not reach the layer).
        """
        count = len(activations)
        second = self.needs_hessian or self.needs_contrast
        gradients = list(
            torch.autograd.grad(
                scores.sum(), activations, allow_unused=True, retain_graph=second,
                create_graph=self.needs_hessian,
            )
        )
        hessian: list[Tensor | None] = [None] * count
        contrast: list[Tensor | None] = [None] * count
        if self.needs_hessian:
            hessian = hessian_products(gradients, activations)
        if self.needs_contrast:
            if classes is None or not isinstance(outputs, Tensor):
                raise ValueError(
                    "finercam compares classes of [B, classes] logits: give `target` as 'predicted', 'label' "
                    "or class indices (or explain FinerTarget's score with another method)"
                )
            contrast_scores = finer_scores(outputs, classes)
            contrast = list(torch.autograd.grad(contrast_scores.sum(), activations, allow_unused=True))
        detached: list[Tensor | None] = [None if g is None else g.detach() for g in gradients]
        return detached, hessian, [None if g is None else g.detach() for g in contrast]

    def _guided(self, inputs: Tensor, target: Target, raw: RawMaps) -> RawMaps:
        """Guided Backpropagation once for the batch, then the saliency of every guided (layer, method).

        Puts each saliency's magnitude ``[B, H, W]`` into ``raw``; returns the saliencies ``[B, C, H, W]``.
        """
        guided = [method for method in self.methods if isinstance(method, GuidedMethod)]
        if not guided:
            return {}
        image = guided_backprop(self.model, inputs, target)
        saliency: RawMaps = {}
        for name in self.layers:
            for method in guided:
                key = (name, method.name)
                saliency[key] = method.saliency(image, raw.get(key))
                raw[key] = saliency_magnitude(saliency[key])
        return saliency


def compute_cam(
    model: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module | None = None,
    method: str = "gradcam",
    *,
    target: Target = "predicted",
    raw: bool = False,
    reshape: ActivationReshape | str | None = None,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
    aug_scales: Sequence[float] = DEFAULT_SCALES,
    chunk_size: int = 64,
) -> Tensor:
    """Class-activation maps of ``inputs`` at ``layer`` (one-shot form of :class:`CAMEngine`).

    Returns a float32 tensor on the inputs' device: ``[B, H, W]`` normalised to [0, 1] per image and
    bilinearly upsampled to the inputs' size, or with ``raw=True`` ``[B, h, w]`` at the layer's resolution,
    after the ReLU and not normalised. For the guided methods the map is the saliency's largest absolute
    value over channels, at the inputs' size; their signed ``[B, C, H, W]`` images are in
    :attr:`CAMResult.saliency` of a :class:`CAMEngine` call. ``layer=None`` picks one as :class:`CAMEngine`
    does; the other keywords are :class:`CAMEngine`'s.
    """
    engine = CAMEngine(
        model, layer, method, reshape=reshape, eigen_smooth=eigen_smooth, aug_smooth=aug_smooth,
        aug_scales=aug_scales, chunk_size=chunk_size,
    )
    result = engine(inputs, target)
    key = (engine.layer_names[0], engine.method_names[0])
    return result.raw[key] if raw else result.normalized(*key)
