"""Token outputs as feature maps: the layout by hand, the YAML strings, and CAMs of a tiny torchvision ViT."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
import torchvision
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.core.tokens import TokenGrid, resolve_reshape, tokens_to_grid

LN_1 = "encoder.layers.encoder_layer_1.ln_1"


def test_tokens_to_grid_hand_layout() -> None:
    tokens = torch.arange(10.0).view(1, 5, 2)  # class token [0, 1], patch tokens [2, 3] [4, 5] [6, 7] [8, 9]
    grid = tokens_to_grid(tokens)
    assert grid.shape == (1, 2, 2, 2)
    assert grid[0, 0].tolist() == [[2, 4], [6, 8]]
    assert grid[0, 1].tolist() == [[3, 5], [7, 9]]
    assert tokens_to_grid(tokens, grid=(1, 4))[0, 0].tolist() == [[2, 4, 6, 8]]
    assert tokens_to_grid(tokens[:, 1:], drop_class_token=False).tolist() == grid.tolist()


def test_tokens_to_grid_errors() -> None:
    with pytest.raises(ValueError, match="do not form a square grid; pass `grid="):
        tokens_to_grid(torch.zeros(1, 6, 3))
    with pytest.raises(ValueError, match="`grid` 2x3 does not hold exactly the 4 patch tokens"):
        tokens_to_grid(torch.zeros(1, 5, 3), grid=(2, 3))
    with pytest.raises(ValueError, match=r"batch-first \[B, tokens, C\], got \(1, 5, 3, 1\)"):
        tokens_to_grid(torch.zeros(1, 5, 3, 1))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tokens", TokenGrid(None, True)),
        ("tokens:2x3", TokenGrid((2, 3), True)),
        (" Tokens:14x14 ", TokenGrid((14, 14), True)),
        ("tokens-all", TokenGrid(None, False)),
        ("tokens-all:1x4", TokenGrid((1, 4), False)),
    ],
)
def test_reshape_strings(spec: str, expected: TokenGrid) -> None:
    resolved = resolve_reshape(spec)
    assert resolved == expected
    assert pickle.loads(pickle.dumps(resolved)) == expected


def test_reshape_passes_callables_and_none_through() -> None:
    def fn(t: Tensor) -> Tensor:
        return t

    assert resolve_reshape(fn) is fn
    assert resolve_reshape(None) is None


@pytest.mark.parametrize("spec", ["token", "tokens:4", "tokens:0x4", "tokens:4x4x4", "grid"])
def test_bad_reshape_strings_name_the_valid_forms(spec: str) -> None:
    with pytest.raises(ValueError, match=r"`reshape`.*'tokens:HxW'|positive sides"):
        resolve_reshape(spec)


def test_reshape_of_a_wrong_type() -> None:
    with pytest.raises(TypeError, match="`reshape` must be None, a callable or a string"):
        resolve_reshape(3)  # type: ignore[arg-type]


# A tiny ViT --------------------------------------------------------------------------------------------


def tiny_vit() -> nn.Module:
    model: nn.Module = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():  # torchvision starts the head at zero: no gradients at all
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return tiny_vit()


@pytest.fixture(scope="module")
def vit_images() -> Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def hand_tokens_and_gradients(
    model: nn.Module, inputs: Tensor, layer: nn.Module, classes: list[int]
) -> tuple[Tensor, Tensor]:
    store: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, out: store.__setitem__("t", out))
    try:
        with torch.enable_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(logits[torch.arange(len(classes)), classes].sum(), store["t"])
    return store["t"].detach(), gradient


def grid_by_loop(tokens: Tensor, side: int) -> Tensor:
    batch, _, channels = tokens.shape
    out = torch.zeros(batch, channels, side, side)
    for i in range(side):
        for j in range(side):
            out[:, :, i, j] = tokens[:, 1 + i * side + j]
    return out


def test_vit_gradcam_by_hand(vit: nn.Module, vit_images: Tensor) -> None:
    result = CAMEngine(vit, LN_1, ["gradcam", "hirescam"], reshape="tokens")(vit_images, target=[1, 3])
    vit.eval()
    tokens, gradients = hand_tokens_and_gradients(vit, vit_images, vit.get_submodule(LN_1), [1, 3])
    a, g = grid_by_loop(tokens, 4), grid_by_loop(gradients, 4)
    assert g.abs().amax(dim=(1, 2, 3)).min() > 1e-3  # the patch tokens do get gradients at this layer
    expected = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1).clamp(min=0)
    assert (expected > 0).flatten(1).sum(dim=1).min() >= 2
    torch.testing.assert_close(result.raw[(LN_1, "gradcam")], expected, rtol=1e-4, atol=1e-6)
    hirescam = (g * a).sum(dim=1).clamp(min=0)
    torch.testing.assert_close(result.raw[(LN_1, "hirescam")], hirescam, rtol=1e-4, atol=1e-6)
    grid_given = compute_cam(vit, vit_images, LN_1, target=[1, 3], reshape="tokens:4x4", raw=True)
    torch.testing.assert_close(grid_given, result.raw[(LN_1, "gradcam")])


def test_the_last_block_output_gives_empty_maps(vit: nn.Module, vit_images: Tensor) -> None:
    # The head reads only the class token of the last block: the patch tokens get no gradient (see tokens.py).
    out = compute_cam(vit, vit_images, "encoder.layers.encoder_layer_1", reshape="tokens", raw=True)
    assert torch.equal(out, torch.zeros(2, 4, 4))


def test_vit_ablationcam_zeroes_feature_k_of_the_patch_tokens(vit: nn.Module, vit_images: Tensor) -> None:
    result = CAMEngine(vit, LN_1, "ablationcam", reshape="tokens", chunk_size=13)(vit_images[:1], target=2)
    vit.eval()
    layer = vit.get_submodule(LN_1)
    with torch.no_grad():
        base = float(vit(vit_images[:1])[0, 2])
        store: dict[str, Tensor] = {}
        handle = layer.register_forward_hook(lambda m, a, out: store.__setitem__("t", out))
        vit(vit_images[:1])
        handle.remove()
        weights = torch.zeros(16)
        for k in range(16):

            def zero(m: nn.Module, a: object, out: Tensor, k: int = k) -> Tensor:
                out = out.clone()
                out[:, 1:, k] = 0  # the class token is left alone
                return out

            handle = layer.register_forward_hook(zero)
            try:
                weights[k] = (base - float(vit(vit_images[:1])[0, 2])) / abs(base)
            finally:
                handle.remove()
    a = grid_by_loop(store["t"], 4)
    expected = (weights[None, :, None, None] * a).sum(dim=1).clamp(min=0)
    assert expected.max() > 0
    torch.testing.assert_close(result.raw[(LN_1, "ablationcam")], expected, rtol=1e-4, atol=1e-6)


def test_every_method_runs_on_the_vit(vit: nn.Module, vit_images: Tensor) -> None:
    methods = ["gradcam", "gradcam++", "layercam", "eigencam", "scorecam", "ablationcam", "guided-gradcam"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ViT has GELUs, no ReLU: guided backprop warns
        result = CAMEngine(vit, LN_1, methods, reshape="tokens", eigen_smooth=True)(vit_images)
    for method in methods:
        raw = result.raw[(LN_1, method)]
        assert raw.shape == ((2, 32, 32) if method == "guided-gradcam" else (2, 4, 4)), method
        assert torch.isfinite(raw).all() and (raw > 0).any(), method
