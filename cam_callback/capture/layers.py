"""Find a layer inside a model by dotted path (``"layer4.1.conv2"``, ``"features.-1"``) or by identity."""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["layer_names", "resolve_layer"]


def layer_names(model: nn.Module) -> list[str]:
    """All addressable submodule paths of ``model`` (the root itself excluded)."""
    return [name for name, _ in model.named_modules() if name]


def _child(module: nn.Module, part: str) -> nn.Module | None:
    children = dict(module.named_children())
    if part in children:
        return children[part]
    try:
        index = int(part)
    except ValueError:
        return None
    ordered = list(children.values())
    if -len(ordered) <= index < len(ordered):
        return ordered[index]
    return None


def _canonical_name(model: nn.Module, target: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if module is target and name:
            return str(name)
    return None


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(canonical_name, module)`` for ``layer``.

    Args:
        model: the network to search.
        layer: a dotted path into ``model.named_modules()``; integer parts index a container's children in
            order and may be negative (``"features.-1"`` is the last child of ``features``). Or the submodule
            itself.

    Raises:
        ValueError: the path or module is not part of ``model``; the message lists the closest valid paths.
        TypeError: ``layer`` is neither a string nor a module.
    """
    if isinstance(layer, nn.Module):
        name = _canonical_name(model, layer)
        if name is None:
            raise ValueError(
                f"`layer`: the module {type(layer).__name__} is not a submodule of {type(model).__name__}"
            )
        return name, layer
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be a dotted path (str) or an nn.Module, got {type(layer).__name__}")
    module: nn.Module | None = model
    for part in layer.split("."):
        module = _child(module, part) if module is not None else None
    if module is None or module is model:
        names = layer_names(model)
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4)
        hint = f"; closest: {', '.join(repr(n) for n in close)}" if close else ""
        top = ", ".join(repr(n) for n, _ in model.named_children())
        raise ValueError(
            f"`layer`: no module at {layer!r} in {type(model).__name__}{hint}. Top-level children: {top}"
        )
    return _canonical_name(model, module) or layer, module
