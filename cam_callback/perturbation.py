"""Score-CAM and Ablation-CAM: channel weights measured by running perturbed copies through the model.

Neither method uses gradients. Each needs one perturbed copy of a sample per channel ``k`` of the layer, so
``B * K`` extra images in all; they go through the model ``chunk_size`` at a time, on the model's device and
under ``torch.no_grad()``, so memory stays bounded by one forward of ``chunk_size`` images. Cost per layer:
``ceil(B * K / chunk_size)`` forward passes (``B * K`` images), no backward. For ResNet-18's ``layer4``
(``K = 512``) and a batch of 8 that is 4096 images, a few hundred times the cost of the Grad-CAM pass
(``benchmarks/bench_methods.py`` measures it).

The functions here return channel weights ``[B, K]``; :func:`cam_callback.methods.combine` turns them into
the map ``ReLU(sum_k w_k A^k)`` (or its eigen-smoothed form).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .maps import normalize_maps, upsample_maps
from .targets import select_scores

__all__ = ["LayerProbe", "ablationcam_weights", "scorecam_weights"]


@dataclass
class LayerProbe:
    """Everything a perturbation method needs to probe one layer of one batch.

    The engine builds it after its main pass, with the model already in eval mode.

    Attributes:
        model: the network.
        inputs: ``[B, C, H, W]`` the batch, on the model's device.
        layer: the module whose output Ablation-CAM perturbs.
        activations: ``[B, K, h, w]`` float32, the layer's output for ``inputs`` as a feature map (after
            ``reshape``).
        target: the target class of each sample (``[B]`` long tensor), or a callable
            ``outputs -> scores``; a callable is applied to batches of copies, so it must score each row of
            the model's output on its own (like ``lambda out: out[:, 3]``).
        scores: ``[B]`` float32 pre-softmax target scores of the unperturbed batch.
        reshape: the function that turned the layer's raw output into ``activations``, or None.
        chunk_size: how many perturbed copies go through the model in one forward.
    """

    model: nn.Module
    inputs: Tensor
    layer: nn.Module
    activations: Tensor
    target: Tensor | Callable[[Any], Tensor]
    scores: Tensor
    reshape: Callable[[Tensor], Tensor] | None
    chunk_size: int


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
        scores, _ = select_scores(outputs, probe.target)
        if scores.numel() != samples.numel():
            raise ValueError(
                f"`target` callable returned {scores.numel()} scores for a batch of {samples.numel()} "
                "perturbed copies; with scorecam/ablationcam it must score each row of the output on its own"
            )
    return scores.detach().float()


def scorecam_weights(probe: LayerProbe) -> Tensor:
    """Score-CAM channel weights ``[B, K]`` (Wang et al. 2020, "Score-CAM: Score-Weighted Visual
    Explanations of Convolutional Neural Networks").

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
    # A constant channel has no spatial information (its normalised mask is all zero): weight 0, as in the paper.
    constant = activations.amax(dim=(2, 3)) == activations.amin(dim=(2, 3))
    return torch.cat(weights).view(batch, channels).masked_fill(constant, 0.0)


def _channel_positions(sample: Tensor, reshape: Callable[[Tensor], Tensor], channels: int) -> Tensor:
    """Where each channel of the reshaped map sits in one sample's raw layer output: ``[K, h*w]`` flat index.

    ``reshape`` is applied to a tensor holding each element's own flat index, so any reshape that only
    rearranges or drops elements (like :func:`cam_callback.tokens.tokens_to_grid`) maps back exactly.
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
    score when channel ``k`` of the layer's output is set to zero (a forward hook on the layer zeroes it in
    each copy of a batch of copies; the network runs from the input). The paper divides by ``y^c``; the
    absolute value keeps a channel whose removal lowers the score positive also when ``y^c < 0`` (for
    ``y^c > 0`` it is the paper's formula); a score of exactly 0 divides by 1. With ``reshape`` the channel
    is zeroed at the positions of the raw output that form it (for tokens: feature ``k`` of every patch
    token, the class token untouched).

    Cost: ``ceil(B * K / chunk_size)`` forwards of at most ``chunk_size`` images, no backward.
    """
    activations = probe.activations
    batch, channels = activations.shape[:2]
    state: dict[str, Tensor] = {}

    def zero_channels(module: nn.Module, args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(f"ablationcam: the layer returned {type(output).__name__}, not a tensor")
        ks = state["channels"].to(output.device)
        rows = torch.arange(output.shape[0], device=output.device)
        ablated = output.clone(memory_format=torch.contiguous_format)
        if probe.reshape is None:
            ablated[rows, ks] = 0
        else:
            if "positions" not in state:
                state["positions"] = _channel_positions(output[:1].detach(), probe.reshape, channels)
            flat = ablated.view(output.shape[0], -1)
            flat[rows.unsqueeze(1), state["positions"].to(output.device)[ks]] = 0
        return ablated

    ablated_scores: list[Tensor] = []
    handle = probe.layer.register_forward_hook(zero_channels)
    try:
        with torch.no_grad():
            for samples, ks in _chunks(batch, channels, probe.chunk_size, activations.device):
                state["channels"] = ks
                outputs = probe.model(probe.inputs[samples.to(probe.inputs.device)])
                ablated_scores.append(_copy_scores(outputs, probe, samples, probabilities=False))
    finally:
        handle.remove()
    ablated = torch.cat(ablated_scores).to(activations.device).view(batch, channels)
    base = probe.scores.detach().float().to(activations.device).unsqueeze(1)
    scale = torch.where(base != 0, base.abs(), torch.ones_like(base))
    return (base - ablated) / scale
