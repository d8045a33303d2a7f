"""Hooks and guards for one explaining pass: everything they change is put back when the block ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LayerCapture", "explaining", "uncompiled", "unwrap_compiled"]


class LayerCapture:
    """Forward hooks that record the outputs of target layers during one forward pass.

    With ``track_gradients``, the forward is expected to start with autograd off: the first target layer
    to run (the earliest one) turns it on, so only the part of the network after it is recorded for
    backward. Its output is captured as a fresh leaf; every captured activation is handed on as a clone,
    so an in-place op after the layer (``ReLU(inplace=True)``) cannot overwrite what was captured.

    Use as a context manager; the hooks are removed when the block ends, also on error.
    """

    def __init__(self, layers: dict[str, nn.Module], *, track_gradients: bool) -> None:
        self.layers = layers
        self.track_gradients = track_gradients
        self.activations: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], Tensor]:
        def hook(module: nn.Module, args: Any, output: Any) -> Tensor:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"`layer` {name!r} returned {type(output).__name__}, not a tensor; choose a layer whose "
                    "output is a feature map"
                )
            if name in self.activations:
                raise ValueError(
                    f"`layer` {name!r} ran more than once in one forward (a shared module); choose a layer "
                    "that runs once"
                )
            if not self.track_gradients:
                self.activations[name] = output.detach().clone()
                return output
            if torch.is_grad_enabled() and output.requires_grad:
                captured = output
            else:
                # The earliest layer, or a later one fed only by tensors computed before it: a fresh leaf.
                captured = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)  # undone by the caller's no_grad block
            self.activations[name] = captured
            return captured.clone()

        return hook

    def __enter__(self) -> LayerCapture:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove every hook this capture registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


@contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for an explanation and restore everything afterwards.

    Restores each module's own train/eval flag and the global RNG state (CPU and the model's CUDA devices);
    leaves inference mode so a graph can be recorded, and starts with autograd off.
    """
    flags = [(module, module.training) for module in model.modules()]
    with ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=_cuda_devices(model)))
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.no_grad())
        model.eval()
        try:
            yield
        finally:
            for module, training in flags:
                module.training = training


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper holds (``_orig_mod``), or ``model`` itself.

    Its layer paths are the user's own (``"features.3"``, not ``"_orig_mod.features.3"``).
    """
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
        return inner
    return model


@contextmanager
def uncompiled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` (and anything ``torch.compile`` made inside it) eagerly within the block.

    An explanation's batch has its own size; run through the compiled code, it would make dynamo compile
    again, and mark the batch dimension dynamic for the training graph too, which then computes (slightly)
    differently. With ``torch.compiler.set_stance`` (torch 2.6 and later) every compiled function runs
    eagerly in the block; before that, a LightningModule compiled by ``trainer.fit(torch.compile(m))`` gets
    its original ``forward`` back for the block (Lightning keeps it in ``_compiler_ctx``).
    """
    set_stance = getattr(torch.compiler, "set_stance", None) if hasattr(torch, "compiler") else None
    if set_stance is not None:
        with set_stance("force_eager"):
            yield
        return
    context = getattr(model, "_compiler_ctx", None)
    original = context.get("original_forward") if isinstance(context, dict) else None
    if original is None:
        yield
        return
    compiled = model.__dict__.get("forward")
    model.forward = original
    try:
        yield
    finally:
        if compiled is None:
            del model.forward
        else:
            model.forward = compiled
