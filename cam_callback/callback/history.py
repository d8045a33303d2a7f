"""The maps' history across validations, and the drift scalars computed as each validation is added."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.drift import as_masks, centre_of_mass, cosine_distance, energy_in_mask, pointing_game, shrink_maps

__all__ = ["MAX_FRAMES", "MapHistory", "kept_ordinals", "sample_numbers", "usable_mean"]

_SEPARATOR = "::"

MAX_FRAMES = 12
"""The most frames the history keeps per (layer, method), so also the summary's most columns."""


def kept_ordinals(count: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """Which of ``count`` recordings (numbered 0, 1, ...) a history of at most ``max_frames`` keeps.

    The first, the latest, and every ``s``-th between them, ``s`` the smallest power of two that fits them
    in ``max_frames``: all of them while they fit, then evenly spaced ones whose spacing doubles as the run
    grows. Each kept set holds every later one's older members, so frames are only ever dropped, never
    needed back. With ``max_frames`` 12: 60 recordings keep 0, 8, ..., 56 and 59.
    """
    if count <= 0:
        return []
    last = count - 1
    stride = 1
    while last // stride + 1 + (last % stride != 0) > max_frames:
        stride *= 2
    return sorted({*range(0, last + 1, stride), last})


def _finite(maps: Tensor) -> Tensor:
    """``[B]``: whether each sample's map is free of NaN and Inf."""
    return maps.flatten(1).isfinite().all(dim=1)


def usable_mean(values: Tensor) -> float:
    """The mean over the samples with a number (NaN marks one left out); NaN when there is none.

    A monitor must not act on a number no sample gave.
    """
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else float("nan")


def sample_numbers(
    maps: Tensor, small: Tensor, references: tuple[Tensor, Tensor] | None, masks: Tensor | None
) -> dict[str, Tensor]:
    """The drift numbers of each sample ``[B]`` by name; a validation's numbers are their usable means.

    A sample whose map (or, for ``change_*`` / ``shift_*``, whose reference map) holds NaN or Inf gets NaN:
    it is left out of the means (:func:`usable_mean`).

    Args:
        maps: ``[B, H, W]`` normalised maps at the input's size.
        small: the same maps shrunk for the history (:func:`~cam_callback.core.drift.shrink_maps`).
        references: the previous and the first recorded small maps of the same samples, or None (the first
            recording: no ``change_*`` / ``shift_*``).
        masks: object masks or boxes of the samples, or None (no ``energy_in_mask`` / ``pointing_game``).
    """
    size = (int(maps.shape[-2]), int(maps.shape[-1]))
    finite = _finite(small)
    numbers: dict[str, Tensor] = {}
    if references is not None:
        for name, reference in zip(("prev", "first"), references, strict=True):
            reference = reference.to(small.device)
            usable = finite & _finite(reference)
            numbers[f"change_{name}"] = _left_out(cosine_distance(small, reference), usable)
            shift = centre_of_mass(small, size) - centre_of_mass(reference, size)
            numbers[f"shift_{name}"] = _left_out(shift.norm(dim=1), usable)
    if masks is not None:
        objects = as_masks(masks, size)
        numbers["energy_in_mask"] = _left_out(energy_in_mask(maps, objects), finite)
        numbers["pointing_game"] = _left_out(pointing_game(maps, objects), finite)
    return numbers


def _left_out(values: Tensor, usable: Tensor) -> Tensor:
    """``values`` with NaN for the samples not ``usable``."""
    return torch.where(usable.to(values.device), values.float(), torch.nan)


class MapHistory:
    """Small copies (at most ``max_side`` pixels a side, on the CPU) of the maps of past validations.

    :meth:`record` adds one validation's maps and returns its drift scalars:
    ``change_prev`` / ``change_first`` (mean ``1 - cosine`` similarity against the previous / first
    recorded maps), ``shift_prev`` / ``shift_first`` (mean distance travelled by the maps' centre of mass, in
    input pixels), and with object masks ``energy_in_mask`` (mean share of each map inside its object) and
    ``pointing_game`` (share of maps whose peak lies on the object). A sample whose map (or, for the
    changes, whose earlier map) holds NaN or Inf is left out of the means; a number with no sample left is
    NaN, never 0 or 1.

    Bounded: per (layer, method) at most ``max_frames`` frames are kept, the first, the latest and evenly
    spaced ones between (see :func:`kept_ordinals`), so memory and ``state_dict`` stay the same size however
    long the run. The first and the previous maps, which the drift compares against, are always kept.
    """

    def __init__(self, max_side: int = 32, max_frames: int = MAX_FRAMES) -> None:
        if max_frames < 2:
            raise ValueError(f"`max_frames` must be at least 2 (the first and the latest), got {max_frames}")
        self.max_side = max_side
        self.max_frames = max_frames
        self._maps: dict[tuple[str, str], list[Tensor]] = {}
        self._steps: dict[tuple[str, str], list[int]] = {}
        self._epochs: dict[tuple[str, str], list[int]] = {}
        self._ordinals: dict[tuple[str, str], list[int]] = {}

    def __len__(self) -> int:
        """The most frames kept for one (layer, method): at most ``max_frames``."""
        return max((len(v) for v in self._maps.values()), default=0)

    @property
    def recorded(self) -> int:
        """How many times maps were recorded for one (layer, method), kept or not (the most of any pair)."""
        return max((v[-1] + 1 for v in self._ordinals.values() if v), default=0)

    def clear(self) -> None:
        """Forget every frame (a new run starts its own history)."""
        self._maps.clear()
        self._steps.clear()
        self._epochs.clear()
        self._ordinals.clear()

    def record(
        self, layer: str, method: str, maps: Tensor, step: int, masks: Tensor | None = None, epoch: int = -1
    ) -> dict[str, float]:
        """Add ``maps`` (``[B, H, W]`` in [0, 1] at the input's size) and return the drift scalars.

        ``step`` is the global step the maps are logged at, ``epoch`` the epoch of their validation (-1: made
        before training, or not known).
        """
        key = (layer, method)
        small = shrink_maps(maps.float(), self.max_side)
        previous = self._maps.get(key, [])
        references = (previous[-1], previous[0]) if previous else None
        per_sample = sample_numbers(maps, small, references, masks)
        scalars = {name: usable_mean(values) for name, values in per_sample.items()}
        ordinals = self._ordinals.setdefault(key, [])
        ordinal = ordinals[-1] + 1 if ordinals else 0
        # A copy, never the caller's tensor (small maps are not shrunk).
        self._maps.setdefault(key, []).append(small.detach().to("cpu", copy=True))
        self._steps.setdefault(key, []).append(int(step))
        self._epochs.setdefault(key, []).append(int(epoch))
        ordinals.append(ordinal)
        self._thin(key)
        return scalars

    def _thin(self, key: tuple[str, str]) -> None:
        """Drop the frames of ``key`` that :func:`kept_ordinals` no longer keeps."""
        ordinals = self._ordinals[key]
        keep = set(kept_ordinals(ordinals[-1] + 1, self.max_frames))
        chosen = [i for i, ordinal in enumerate(ordinals) if ordinal in keep]
        self._maps[key] = [self._maps[key][i] for i in chosen]
        self._steps[key] = [self._steps[key][i] for i in chosen]
        epochs = self._epochs.get(key) or [-1] * len(ordinals)  # a state saved before epochs were kept
        self._epochs[key] = [epochs[i] for i in chosen]
        self._ordinals[key] = [ordinals[i] for i in chosen]

    def frames(self) -> dict[tuple[str, str], Tensor]:
        """``{(layer, method): [T, B, h, w]}``: the kept frames, oldest first (``T <= max_frames``)."""
        return {key: torch.stack(maps) for key, maps in self._maps.items() if maps}

    def steps(self, layer: str, method: str) -> list[int]:
        """Global steps of the kept frames of one (layer, method)."""
        return list(self._steps.get((layer, method), []))

    def epochs(self, layer: str, method: str) -> list[int]:
        """Epochs of the kept frames of one (layer, method) (-1: made before training, or not known)."""
        return list(self._epochs.get((layer, method), []))

    @property
    def last_step(self) -> int | None:
        """The latest step any frame was recorded at, or None before the first."""
        return max((steps[-1] for steps in self._steps.values() if steps), default=None)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and ints only, keyed ``"layer::method"``; as bounded as the history itself."""

        def keyed(table: dict[tuple[str, str], list[Any]], stack: Any) -> dict[str, Tensor]:
            return {f"{layer}{_SEPARATOR}{method}": stack(v) for (layer, method), v in table.items() if v}

        return {
            "max_side": self.max_side,
            "maps": keyed(self._maps, torch.stack),
            "steps": keyed(self._steps, torch.tensor),
            "epochs": keyed(self._epochs, torch.tensor),
            "ordinals": keyed(self._ordinals, torch.tensor),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (a state saved before frames were numbered works too)."""

        def split(key: str) -> tuple[str, str]:
            layer, method = key.split(_SEPARATOR, 1)
            return layer, method

        self._maps = {split(k): list(v.unbind(0)) for k, v in state.get("maps", {}).items()}
        self._steps = {split(k): v.tolist() for k, v in state.get("steps", {}).items()}
        self._epochs = {split(k): v.tolist() for k, v in state.get("epochs", {}).items()}
        saved = {split(k): v.tolist() for k, v in state.get("ordinals", {}).items()}
        self._ordinals = {key: saved.get(key, list(range(len(maps)))) for key, maps in self._maps.items()}
        for key in self._maps:
            self._thin(key)  # a longer history saved before the bound, or under a larger one
        if self._maps:  # keep the saved maps' size, so that new maps compare with them
            self.max_side = int(state.get("max_side", self.max_side))
