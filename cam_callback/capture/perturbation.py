"""Score-CAM and Ablation-CAM: channel weights measured by running perturbed copies through the model.

Neither method uses gradients. Each needs one perturbed copy of a sample per channel ``k`` of the layer, so
``B * K`` extra images in all; they go through the model ``chunk_size`` at a time, on the model's device and
under ``torch.no_grad()``, so memory stays bounded by one forward of ``chunk_size`` images. Cost per layer:
``ceil(B * K / chunk_size)`` forward passes (``B * K`` images), no backward. For ResNet-18's ``layer4``
(``K = 512``) and a batch of 8 that is 4096 images, several hundred times the cost of the Grad-CAM pass
(``benchmarks/bench_methods.py`` measures it). Ablation-CAM perturbs the layer, not the input, so it
runs the part of the network before the layer once per sample and chunk, and only the rest on the copies
(see :func:`ablationcam_weights`).

The functions here return channel weights ``[B, K]``; :class:`PerturbationMethod` turns them into the map
``ReLU(sum_k w_k A^k)`` (or its eigen-smoothed form) with :func:`cam_callback.core.methods.combine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.maps import normalize_maps, upsample_maps
from ..core.methods import combine
from ..core.targets import select_scores, target_for_rows
from .probe import LayerProbe

__all__ = ["PERTURBATION_METHODS", "PerturbationMethod", "ablationcam_weights", "scorecam_weights"]


@dataclass(frozen=True)
class PerturbationMethod:
    """A method whose channel weights come from extra forwards of perturbed copies (no gradients).

    Attributes:
        name: the registry name.
        weights: ``weights(probe) -> [B, K]`` channel weights (:func:`scorecam_weights`,
            :func:`ablationcam_weights`).
    """

    name: str
    weights: Callable[[LayerProbe], Tensor]
    needs_gradients: bool = field(default=False, init=False)

    def layer_map(self, layer: LayerProbe) -> Tensor:
        """The raw map ``[B, h, w]``: ``ReLU(sum_k w_k A^k)`` of the measured weights (or eigen-smoothed)."""
        return combine(self.weights(layer), layer.activations, eigen_smooth=layer.eigen_smooth)


def _chunks(
    batch: int, channels: int, chunk_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(samples, channels)`` index pairs, ``chunk_size`` at a time, sample-major."""
    samples = torch.arange(batch, device=device).repeat_interleave(channels)
    ks = torch.arange(channels, device=device).repeat(batch)
    for start in range(0, batch * channels, chunk_size):
        yield samples[start : start + chunk_size], ks[start : start + chunk_size]


def _copy_scores(outputs: Any, probe: LayerProbe, samples: Tensor, *, probabilities: bool) -> Tensor:
    """The target score of each copy ``[n]``, float32 (softmax probabilities if asked, for class targets)."""
    if isinstance(probe.target, Tensor):
        if probabilities and isinstance(outputs, Tensor) and outputs.dim() == 2:
            outputs = outputs.float().softmax(dim=1)
        scores, _ = select_scores(outputs, probe.target[samples.to(probe.target.device)])
    else:
        scores, _ = select_scores(outputs, target_for_rows(probe.target, samples))
        if scores.numel() != samples.numel():
            raise ValueError(
                f"`target` callable returned {scores.numel()} scores for a batch of {samples.numel()} "
                "perturbed copies; with scorecam/ablationcam it must score each row of the output on its own"
            )
    return scores.detach().float()


def scorecam_weights(probe: LayerProbe) -> Tensor:
    """Score-CAM channel weights ``[B, K]``.

    From Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations of Convolutional Neural Networks".

    For each channel ``k``: upsample ``A^k`` to the input's size (bilinear), min-max normalise it to
    [0, 1] (a constant channel gives an all-zero mask), multiply the input by it and run the model;
    ``w_k`` is the softmax probability of the target class for that masked input, as in Algorithm 1 of the
    paper: the probability itself, neither its increase over a baseline image nor a softmax over channels.
    With a callable ``target`` the callable's score of the masked input is used as is (no softmax).

    Cost: ``ceil(B * K / chunk_size)`` forwards of at most ``chunk_size`` images, no backward.
    """
    activations = probe.activations
    batch, channels = activations.shape[:2]
    size = (int(probe.inputs.shape[-2]), int(probe.inputs.shape[-1]))
    weights: list[Tensor] = []
    with torch.no_grad():
        for samples, ks in _chunks(batch, channels, probe.chunk_size, activations.device):
            masks = normalize_maps(upsample_maps(activations[samples, ks], size))
            masks = masks.unsqueeze(1).to(device=probe.inputs.device, dtype=probe.inputs.dtype)
            outputs = probe.model(probe.inputs[samples.to(probe.inputs.device)] * masks)
            weights.append(_copy_scores(outputs, probe, samples, probabilities=True).to(activations.device))
    # A constant channel has no spatial information (its normalised mask is all zero): weight 0, as in the
    # paper.
    constant = activations.amax(dim=(2, 3)) == activations.amin(dim=(2, 3))
    return torch.cat(weights).view(batch, channels).masked_fill(constant, 0.0)


def _channel_positions(sample: Tensor, reshape: Callable[[Tensor], Tensor], channels: int) -> Tensor:
    """Where each channel of the reshaped map sits in one sample's raw layer output: ``[K, h*w]`` flat index.

    ``reshape`` is applied to a tensor holding each element's own flat index, so any reshape that only
    rearranges or drops elements (like :func:`cam_callback.core.tokens.tokens_to_grid`) maps back exactly.
    """
    count = sample.numel()
    index = torch.arange(count, dtype=torch.float64, device=sample.device).reshape(sample.shape)
    grid = reshape(index)
    if not isinstance(grid, Tensor) or grid.dim() != 4 or grid.shape[0] != 1 or grid.shape[1] != channels:
        raise ValueError("ablationcam: `reshape` must turn a [1, ...] layer output into [1, K, h, w]")
    positions = grid[0].reshape(channels, -1).double()
    exact = torch.equal(positions, positions.round()) and bool(((positions >= 0) & (positions < count)).all())
    if not exact or positions.unique().numel() != positions.numel():
        raise ValueError(
            "ablationcam: `reshape` must only rearrange the layer's output elements (like 'tokens'), so that "
            "a channel of the feature map can be zeroed in the layer's output"
        )
    return positions.long()


def ablationcam_weights(probe: LayerProbe) -> Tensor:
    """Ablation-CAM channel weights ``[B, K]`` (Desai & Ramaswamy 2020, "Ablation-CAM").

    ``w_k = (y^c - y^c_k) / |y^c|``: ``y^c`` is the pre-softmax target score of the sample, ``y^c_k`` the
    score when channel ``k`` of the layer's output is set to zero. The paper divides by ``y^c``; the
    absolute value keeps a channel whose removal lowers the score positive also when ``y^c < 0`` (for
    ``y^c > 0`` it is the paper's formula); a score of exactly 0 divides by 1. With ``reshape`` the channel
    is zeroed at the positions of the raw output that form it (for tokens: feature ``k`` of every patch
    token, the class token untouched).

    How the copies run: a forward hook on the layer zeroes channel ``k`` in each copy. Every copy of a
    sample shares the part of the network before the layer, so by default that part runs once per chunk on
    the one sample and the hook fans its output out into the chunk's copies; only the rest of the network
    sees ``chunk_size`` rows (for ResNet-18's ``layer4``: the pooling and the classifier). This holds when
    what follows the layer depends on the sample only through the layer's output or through tensors of
    batch 1 that broadcast. The first chunk checks it: it carries an unablated copy, whose score must
    match the unperturbed one; if it does not, or that forward fails, every copy is run from the input
    instead (``ceil(B * K / chunk_size)`` full forwards).

    Cost: ``ceil((K + 1) / chunk_size) + (B - 1) * ceil(K / chunk_size)`` forwards of one image whose rest
    runs on up to ``chunk_size`` rows (the ``+ 1``: the check copy), or the full forwards above; no backward.
    """
    try:
        return _ablationcam_fanned_out(probe)
    except _FanOutUnsupported:
        return _ablationcam_from_the_input(probe)


class _FanOutUnsupported(Exception):
    """The network after the layer does not depend on the sample through the layer's output alone."""


def _ablation_hook(probe: LayerProbe, state: dict[str, Any]) -> Callable[[nn.Module, Any, Any], Tensor]:
    """A forward hook that zeroes channel ``state["channels"][i]`` in row ``i`` of the layer's output.

    Nothing is zeroed in a row whose channel is negative. When ``state["rows"]`` is set, the hook first takes
    those rows of the output (the fan-out).
    """
    channels = probe.activations.shape[1]

    def zero_channels(module: nn.Module, args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(f"ablationcam: the layer returned {type(output).__name__}, not a tensor")
        ks = state["channels"].to(output.device)
        rows = state.get("rows")
        if rows is None:
            ablated = output.clone(memory_format=torch.contiguous_format)
        else:
            ablated = output[rows.to(output.device)].contiguous()  # a fresh tensor, one row per copy
        index = torch.arange(ablated.shape[0], device=output.device)
        keep = ks >= 0
        index, ks = index[keep], ks[keep]
        if probe.reshape is None:
            ablated[index, ks] = 0
        else:
            if "positions" not in state:
                state["positions"] = _channel_positions(output[:1].detach(), probe.reshape, channels)
            flat = ablated.view(ablated.shape[0], -1)
            flat[index.unsqueeze(1), state["positions"].to(output.device)[ks]] = 0
        return ablated

    return zero_channels


def _ablation_weights(probe: LayerProbe, ablated: Tensor) -> Tensor:
    """``(y - y_k) / |y|`` from the ablated scores ``[B, K]``."""
    base = probe.scores.detach().float().to(ablated.device).unsqueeze(1)
    scale = torch.where(base != 0, base.abs(), torch.ones_like(base))
    return (base - ablated) / scale


def _ablationcam_fanned_out(probe: LayerProbe) -> Tensor:
    """Ablation-CAM with the part before the layer run once per chunk (see :func:`ablationcam_weights`)."""
    activations = probe.activations
    batch, channels = activations.shape[:2]
    every_channel = torch.arange(channels, device=activations.device)
    state: dict[str, Any] = {}

    def run(sample: int, ks: Tensor) -> tuple[Tensor, Any]:
        """Scores of ``sample`` with channel ``ks[i]`` zeroed in copy ``i`` (none where negative)."""
        state["channels"], state["rows"] = ks, torch.zeros_like(ks)  # every copy from row 0: the sample
        outputs = probe.model(probe.inputs[sample : sample + 1])
        scores = _copy_scores(outputs, probe, torch.full_like(ks, sample), probabilities=False)
        return scores.to(activations.device), outputs

    handle = probe.layer.register_forward_hook(_ablation_hook(probe, state))
    try:
        with torch.no_grad():
            # The first chunk leads with an unablated copy of sample 0: it must score what the sample did.
            first = torch.cat([every_channel.new_full((1,), -1), every_channel])[: probe.chunk_size]
            try:
                scores, outputs = run(0, first)
            except Exception as error:  # the network after the layer cannot take the fanned-out rows
                raise _FanOutUnsupported from error
            if not _same_score(scores[0], probe.scores[0], outputs):
                raise _FanOutUnsupported
            per_sample: list[list[Tensor]] = [[scores[1:]]] + [[] for _ in range(batch - 1)]
            for sample in range(batch):
                begin = first.numel() - 1 if sample == 0 else 0  # channels the first chunk already did
                for start in range(begin, channels, probe.chunk_size):
                    per_sample[sample].append(run(sample, every_channel[start : start + probe.chunk_size])[0])
    finally:
        handle.remove()
    return _ablation_weights(probe, torch.stack([torch.cat(chunks) for chunks in per_sample]))


def _same_score(copy: Tensor, reference: Tensor, outputs: Any) -> bool:
    """Whether the unablated copy scored what the unperturbed sample scored, up to rounding."""
    dtype = outputs.dtype if isinstance(outputs, Tensor) and outputs.is_floating_point() else torch.float32
    tolerance = max(1e-4, 8 * torch.finfo(dtype).eps)
    reference = reference.detach().float().to(copy.device)
    return bool((copy - reference).abs() <= tolerance * max(1.0, float(reference.abs())))


def _ablationcam_from_the_input(probe: LayerProbe) -> Tensor:
    """Ablation-CAM with every copy run through the whole network, ``chunk_size`` copies per forward."""
    activations = probe.activations
    batch, channels = activations.shape[:2]
    state: dict[str, Any] = {}
    ablated_scores: list[Tensor] = []
    handle = probe.layer.register_forward_hook(_ablation_hook(probe, state))
    try:
        with torch.no_grad():
            for samples, ks in _chunks(batch, channels, probe.chunk_size, activations.device):
                state["channels"] = ks
                outputs = probe.model(probe.inputs[samples.to(probe.inputs.device)])
                ablated_scores.append(_copy_scores(outputs, probe, samples, probabilities=False))
    finally:
        handle.remove()
    return _ablation_weights(probe, torch.cat(ablated_scores).to(activations.device).view(batch, channels))


PERTURBATION_METHODS: dict[str, PerturbationMethod] = {
    "scorecam": PerturbationMethod("scorecam", scorecam_weights),
    "ablationcam": PerturbationMethod("ablationcam", ablationcam_weights),
}
"""The methods that run perturbed copies through the model, by name."""
