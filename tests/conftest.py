"""Small shared fixtures: tiny deterministic models and inputs."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import pytest
import torch
from torch import Tensor, nn

# The test tensors are tiny: splitting them over threads costs more than it saves.
torch.set_num_threads(1)

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``cuda`` where torch sees no CUDA device, saying why."""
    if torch.cuda.is_available():
        return
    reason = "needs a CUDA device (torch.cuda.is_available() is False here): run scripts/gpu_check.sh on one"
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def fill_deterministic(module: ModuleT, seed: int = 0) -> ModuleT:
    """Overwrite every parameter and BatchNorm buffer from a private generator (global RNG untouched)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                assert sub.running_mean is not None and sub.running_var is not None
                assert sub.num_batches_tracked is not None
                sub.running_mean.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(sub.num_features, generator=generator) + 0.5)
                sub.num_batches_tracked.fill_(7)
    return module


class TinyNet(nn.Module):
    """conv-BN-ReLU, then the target conv ``features.3`` followed by an in-place ReLU, dropout, pool, linear.

    ``forward_calls`` counts how often ``forward`` ran.
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)
        self.forward_calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.forward_calls += 1
        x = self.features(x)
        x = self.pool(x).flatten(1)
        return cast(Tensor, self.fc(self.dropout(x)))


@pytest.fixture
def tiny_net() -> TinyNet:
    """A fresh TinyNet in train mode with fixed weights and non-trivial BatchNorm statistics."""
    return fill_deterministic(TinyNet())


@pytest.fixture
def images() -> Tensor:
    """Two deterministic 3x12x12 images."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 12, 12, generator=generator)


def reference_map(method: str, activations: Tensor, gradients: Tensor | None) -> Tensor:
    """The raw ``[B, h, w]`` map of ``method``, computed channel by channel in float64 from the formulas."""
    a_all = activations.detach().double()
    g_all = gradients.detach().double() if gradients is not None else None
    batch, channels, height, width = a_all.shape
    maps = torch.zeros(batch, height, width, dtype=torch.float64)
    # Random-CAM: uniform weights in [-1, 1) from a generator of their own seeded 0, per (sample, channel).
    seeded = torch.Generator().manual_seed(0)
    random_weights = torch.rand((batch, channels), generator=seeded, dtype=torch.float64) * 2 - 1
    for b in range(batch):
        if method == "kpcacam":
            maps[b] = kernel_pca_reference(a_all[b]).reshape(height, width)
            continue
        if method in ("eigencam", "eigengradcam"):
            # The first principal component: centre each channel over the positions, then project the
            # centred [hw, K] matrix on its first right singular vector (an SVD, not the code's eigh).
            # Eigen-Grad-CAM: the same, of g * A.
            source = a_all[b] if method == "eigencam" else a_all[b] * cast(Tensor, g_all)[b]
            matrix = source.reshape(channels, height * width).T  # rows: positions, columns: channels
            centred = matrix - matrix.mean(dim=0)
            _, _, right = torch.linalg.svd(centred, full_matrices=False)
            projection = centred @ right[0]
            if projection[projection.abs().argmax()] < 0:
                projection = -projection
            maps[b] = projection.clamp(min=0).reshape(height, width)
            continue
        assert g_all is not None
        total = torch.zeros(height, width, dtype=torch.float64)
        for k in range(channels):
            a, g = a_all[b, k], g_all[b, k]
            if method == "randomcam":
                total += random_weights[b, k] * a
            elif method == "gradcam":
                total += g.sum() / (height * width) * a
            elif method == "gradcam++":
                weight: float | Tensor = 0.0
                for i in range(height):
                    for j in range(width):
                        denominator = 2 * g[i, j] ** 2 + a.sum() * g[i, j] ** 3
                        if denominator != 0 and g[i, j] > 0:
                            weight += g[i, j] ** 2 / denominator * g[i, j]
                total += weight * a
            elif method == "xgradcam":
                if a.sum() != 0:
                    total += (a / a.sum() * g).sum() * a
            elif method == "hirescam":
                total += g * a
            elif method == "layercam":
                total += g.clamp(min=0) * a
            elif method == "gradcam-elementwise":
                total += (g * a).clamp(min=0)
            else:
                raise KeyError(method)
        maps[b] = total.clamp(min=0)
    return maps


def kernel_pca_reference(activations: Tensor, gamma: float | None = None) -> Tensor:
    """KPCA-CAM of one image ``[K, h, w]`` in float64: RBF kernel over the positions, centred with
    ``H = I - 1/n``, each position's coordinate ``Kc u_1 / sqrt(s_1)`` on the first component (an SVD of
    ``Kc``, not the code's eigh), sign making the largest magnitude positive, ReLU; ``[h*w]``."""
    points = activations.double().reshape(activations.shape[0], -1).T  # [n, K]
    n = points.shape[0]
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(dim=2)
    if gamma is None:
        gamma = 0.0 if float(squared.mean()) == 0 else 1 / float(squared.mean())
    centring = torch.eye(n, dtype=torch.float64) - 1 / n
    kernel = centring @ torch.exp(-gamma * squared) @ centring
    left, values, _ = torch.linalg.svd(kernel)
    if float(values[0]) <= 0:
        return torch.zeros(n, dtype=torch.float64)
    projection = kernel @ left[:, 0] / values[0].sqrt()
    if projection[projection.abs().argmax()] < 0:
        projection = -projection
    result: Tensor = projection.clamp(min=0)
    return result


# The model left as found: shared by the engine, guided, perturbation and smoothing tests -------------------

GUARDS = {"plain": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def model_state(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "tensors": [t.clone() for t in model.state_dict().values()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "modes": torch._C._len_torch_function_stack(),
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert before["training"] == after["training"]
    for old, new in zip(before["grads"], after["grads"], strict=True):  # type: ignore[call-overload]
        assert (old is None and new is None) or torch.equal(old, new)
    for old, new in zip(before["tensors"], after["tensors"], strict=True):  # type: ignore[call-overload]
        assert torch.equal(old, new)
    assert torch.equal(before["rng"], after["rng"])  # type: ignore[arg-type]
    assert (before["hooks"], before["grad_enabled"], before["modes"]) == (
        after["hooks"],
        after["grad_enabled"],
        after["modes"],
    )


def explain_leaving_state(model: nn.Module, images: Tensor, context: str, method: str, **options: Any):
    """Run ``CAMEngine(model, "features.3", method, **options)`` on a copy of ``images`` (targets 1 and 2)
    under the grad mode ``context``, assert the model and global state came out as they went in, and return
    the engine's result."""
    from cam_callback import CAMEngine

    with GUARDS[context]():
        batch = images.clone()
        before = model_state(model)
        result = CAMEngine(model, "features.3", method, **options)(batch, target=[1, 2])
        after = model_state(model)
    assert_same_state(before, after)
    return result


class FailsOnCall(nn.Module):
    """Wraps TinyNet; the forward with number ``fail_at`` (1-based) raises after the network ran."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.net = fill_deterministic(TinyNet())
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        out: Tensor = self.net(x)
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return out


def hand_activation_and_gradient(
    model: nn.Module, inputs: Tensor, layer: nn.Module, classes: list[int], *, clone: bool = True
) -> tuple[Tensor, Tensor]:
    """The layer's output and d(score)/d(output), with a forward hook and torch.autograd.grad."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: object, output: Tensor) -> Tensor | None:
        store["a"] = output
        return output.clone() if clone else None

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    score = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()
    (gradient,) = torch.autograd.grad(score, store["a"])
    return store["a"].detach(), gradient
