"""The maps' history across validations, and the drift scalars computed as each validation is added."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.drift import as_masks, centre_of_mass, cosine_distance, energy_in_mask, pointing_game, shrink_maps

__all__ = ["MapHistory"]

_SEPARATOR = "::"


class MapHistory:
    """Small copies (at most ``max_side`` pixels a side, on the CPU) of every validation's maps.

    :meth:`record` adds one validation's maps and returns its drift scalars:
    ``change_prev`` / ``change_first`` (mean ``1 - cosine`` similarity against the previous / first
    recorded maps), ``shift_prev`` / ``shift_first`` (mean distance travelled by the maps' centre of mass, in
    input pixels), and with object masks ``energy_in_mask`` (mean share of each map inside its object) and
    ``pointing_game`` (share of maps whose peak lies on the object).
    """

    def __init__(self, max_side: int = 32) -> None:
        self.max_side = max_side
        self._maps: dict[tuple[str, str], list[Tensor]] = {}
        self._steps: dict[tuple[str, str], list[int]] = {}
        self._input_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return max((len(v) for v in self._maps.values()), default=0)

    def record(
        self, layer: str, method: str, maps: Tensor, step: int, masks: Tensor | None = None
    ) -> dict[str, float]:
        """Add ``maps`` (``[B, H, W]`` in [0, 1] at the input's size) and return the drift scalars."""
        key = (layer, method)
        size = (int(maps.shape[-2]), int(maps.shape[-1]))
        self._input_size = size
        small = shrink_maps(maps.float(), self.max_side)
        scalars: dict[str, float] = {}
        previous = self._maps.get(key, [])
        if previous:
            for name, reference in (("prev", previous[-1]), ("first", previous[0])):
                reference = reference.to(small.device)
                scalars[f"change_{name}"] = float(cosine_distance(small, reference).mean())
                shift = centre_of_mass(small, size) - centre_of_mass(reference, size)
                scalars[f"shift_{name}"] = float(shift.norm(dim=1).mean())
        if masks is not None:
            objects = as_masks(masks, size)
            scalars["energy_in_mask"] = float(energy_in_mask(maps, objects).mean())
            scalars["pointing_game"] = float(pointing_game(maps, objects).mean())
        # A copy, never the caller's tensor (small maps are not shrunk).
        self._maps.setdefault(key, []).append(small.detach().to("cpu", copy=True))
        self._steps.setdefault(key, []).append(int(step))
        return scalars

    def frames(self) -> dict[tuple[str, str], Tensor]:
        """``{(layer, method): [T, B, h, w]}`` with one frame per recorded validation."""
        return {key: torch.stack(maps) for key, maps in self._maps.items() if maps}

    def steps(self, layer: str, method: str) -> list[int]:
        """Global steps of the recorded validations of one (layer, method)."""
        return list(self._steps.get((layer, method), []))

    def state_dict(self) -> dict[str, Any]:
        """Tensors only, keyed ``"layer::method"``."""
        return {
            "max_side": self.max_side,
            "maps": {
                f"{layer}{_SEPARATOR}{method}": torch.stack(v)
                for (layer, method), v in self._maps.items()
                if v
            },
            "steps": {
                f"{layer}{_SEPARATOR}{method}": torch.tensor(v)
                for (layer, method), v in self._steps.items()
                if v
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._maps = {
            tuple(k.split(_SEPARATOR, 1)): list(v.unbind(0)) for k, v in state.get("maps", {}).items()
        }
        self._steps = {tuple(k.split(_SEPARATOR, 1)): v.tolist() for k, v in state.get("steps", {}).items()}
        if self._maps:  # keep the saved maps' size, so that new maps compare with them
            self.max_side = int(state.get("max_side", self.max_side))
