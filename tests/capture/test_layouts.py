"""Layer layouts: prefix tokens read from the model, channels-last outputs caught (timm, random weights)."""

from __future__ import annotations

import warnings
from typing import Any, cast

import pytest
import torch

from cam_callback import CAMEngine, compute_cam
from cam_callback.capture.layouts import channel_count, prefix_tokens, warn_if_channels_last
from cam_callback.core.tokens import TokenGrid, tokens_to_grid


def _timm() -> Any:
    return pytest.importorskip("timm")


# The functions on hand-made modules ------------------------------------------------------------------------


def _declaring(count: object) -> torch.nn.Module:
    module = torch.nn.Module()
    module.num_prefix_tokens = count  # type: ignore[assignment]
    return module


def test_prefix_tokens_come_from_the_innermost_declaring_module_on_the_path():
    model = _declaring(1)
    model.inner = _declaring(5)
    model.inner.blocks = torch.nn.Sequential(torch.nn.LayerNorm(4))
    model.side = torch.nn.Linear(2, 2)
    assert prefix_tokens(model, "inner.blocks.0") == 5
    assert prefix_tokens(model, "side") == 1  # only the root declares it on this path
    assert prefix_tokens(torch.nn.Sequential(torch.nn.Linear(2, 2)), "0") is None
    assert prefix_tokens(_declaring(True), "x") is None  # a bool is no count
    assert prefix_tokens(_declaring(0), "x") == 0


def test_channel_count_is_the_last_one_dimensional_parameter_or_the_norms_shape():
    assert channel_count(torch.nn.Conv2d(3, 7, 1)) == 7  # its bias
    assert channel_count(torch.nn.LayerNorm(16)) == 16
    assert channel_count(torch.nn.LayerNorm(16, elementwise_affine=False)) == 16  # no parameters at all
    assert channel_count(torch.nn.Sequential(torch.nn.Conv2d(3, 7, 1), torch.nn.BatchNorm2d(7))) == 7
    assert channel_count(torch.nn.Conv2d(3, 7, 1, bias=False)) is None  # a 4-D weight only
    assert channel_count(torch.nn.ReLU()) is None


def test_a_four_d_output_whose_last_side_is_the_channel_count_warns():
    norm = torch.nn.LayerNorm(8)
    message = (
        r"layer 'x' gives \(2, 4, 4, 8\), which looks channels-last \[B, h, w, C\] \(its last dimension "
        r"is the layer's 8 channels\); pass reshape='nhwc'"
    )
    with pytest.warns(UserWarning, match=message):
        assert warn_if_channels_last("x", norm, torch.zeros(2, 4, 4, 8)) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_channels_last("x", norm, torch.zeros(2, 8, 4, 4)) is False  # channels first
        assert warn_if_channels_last("x", norm, torch.zeros(2, 8, 4, 8)) is False  # both: channels first
        assert warn_if_channels_last("x", norm, torch.zeros(2, 16, 8)) is False  # tokens, not 4-D
        assert warn_if_channels_last("x", torch.nn.ReLU(), torch.zeros(2, 4, 4, 8)) is False  # no count


# timm's transformers ---------------------------------------------------------------------------------------


def _vit(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"img_size": 32, "num_classes": 3, "depth": 2, "embed_dim": 48, "num_heads": 2, **kwargs}
    model = _timm().create_model("vit_tiny_patch16_224", pretrained=False, **options)
    return cast(torch.nn.Module, model.eval())


@pytest.fixture(scope="module")
def vit_reg() -> torch.nn.Module:
    return _vit(reg_tokens=4, patch_size=8)  # 1 class + 4 register tokens + a 4x4 patch grid


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _by_hand(
    model: torch.nn.Module,
    images: torch.Tensor,
    layer: torch.nn.Module,
    prefix: int,
    target: int | None = None,
):
    """Grad-CAM written out for ``target`` (None: the predicted class): tokens after ``prefix`` laid out row
    by row on a square grid."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        logits = model(images)
    finally:
        handle.remove()
    tokens = store["a"]
    index = logits.argmax(1, keepdim=True) if target is None else torch.full((len(images), 1), target)
    grad = torch.autograd.grad(logits.gather(1, index).sum(), tokens)[0]
    side = int((tokens.shape[1] - prefix) ** 0.5)
    a = tokens[:, prefix:].reshape(len(images), side, side, -1).permute(0, 3, 1, 2)
    g = grad[:, prefix:].reshape(len(images), side, side, -1).permute(0, 3, 1, 2)
    return torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


def test_register_tokens_are_read_from_the_model(vit_reg, images):
    assert vit_reg.num_prefix_tokens == 5
    layer = vit_reg.blocks[-1].norm1
    ours = compute_cam(vit_reg, images, "blocks.1.norm1", reshape="tokens", raw=True)
    torch.testing.assert_close(ours, _by_hand(vit_reg, images, layer, prefix=5))
    assert ours.shape == (2, 4, 4)
    # Each class as the target too, and at least one map not all zero, so the comparison means something: the
    # weights are random, and timm's initialisation differs between releases (with timm 1.0.3 the predicted
    # class's maps are all zero, the ReLU leaving nothing).
    peaks = []
    for target in range(3):
        ours = compute_cam(vit_reg, images, "blocks.1.norm1", reshape="tokens", raw=True, target=target)
        torch.testing.assert_close(ours, _by_hand(vit_reg, images, layer, prefix=5, target=target))
        peaks.append(float(ours.amax()))
    assert max(peaks) > 0
    assert CAMEngine(vit_reg, "blocks.1.norm1", reshape="tokens").reshape == TokenGrid(None, True, 5)


def test_a_wrapping_module_still_finds_the_prefix_tokens(vit_reg, images):
    wrapper = torch.nn.Module()
    wrapper.model = vit_reg
    wrapper.forward = lambda x: vit_reg(x)
    engine = CAMEngine(wrapper, "model.blocks.1.norm1", reshape="tokens")
    assert engine.reshape == TokenGrid(None, True, 5)


def test_a_grid_that_does_not_hold_exactly_the_patch_tokens_is_refused(vit_reg, images):
    # 21 tokens: dropping one class token would leave 20 = 4x5, register tokens laid out as patches
    message = r"`grid` 4x5 does not hold exactly the 16 patch tokens \(after 5 prefix"
    with pytest.raises(ValueError, match=message):
        compute_cam(vit_reg, images, "blocks.1.norm1", reshape="tokens:4x5")
    with pytest.raises(ValueError, match=r"`grid` 4x5 does not hold exactly the 16 patch tokens"):
        tokens_to_grid(torch.zeros(1, 21, 3), (4, 5), prefix_tokens=5)


def test_no_class_token_with_registers_and_gap():
    model = _vit(reg_tokens=4, class_token=False, global_pool="avg", patch_size=8)
    assert model.num_prefix_tokens == 4
    x = torch.rand(1, 3, 32, 32)
    ours = compute_cam(model, x, "blocks.1.norm1", reshape="tokens", raw=True)
    torch.testing.assert_close(ours, _by_hand(model, x, cast(Any, model).blocks[-1].norm1, prefix=4))


def test_a_plain_vit_drops_one_class_token(images):
    model = _vit(patch_size=8)
    assert model.num_prefix_tokens == 1
    ours = compute_cam(model, images, "blocks.1.norm1", reshape="tokens", raw=True)
    torch.testing.assert_close(ours, _by_hand(model, images, cast(Any, model).blocks[-1].norm1, prefix=1))


@pytest.fixture(scope="module")
def swin() -> torch.nn.Module:
    torch.manual_seed(0)
    model = _timm().create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=32, num_classes=3, depths=(1, 1),
        embed_dim=16, num_heads=(1, 1), window_size=2,
    )
    return cast(torch.nn.Module, model.eval())


def test_swin_stage_with_nhwc_equals_a_hand_written_grad_cam(swin, images):
    store: dict[str, torch.Tensor] = {}
    handle = swin.layers[-1].register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        logits = swin(images)
    finally:
        handle.remove()
    a = store["a"]  # [B, h, w, C]
    assert a.shape == (2, 4, 4, 32)
    g = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), a)[0]
    expected = torch.relu((g.mean((1, 2), keepdim=True) * a).sum(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nhwc given: no layout warning
        ours = compute_cam(swin, images, "layers.1", reshape="nhwc", raw=True)
    torch.testing.assert_close(ours, expected)


def test_a_channels_last_layer_without_reshape_warns(swin, images):
    message = r"'layers.1' gives \(2, 4, 4, 32\), which looks channels-last.*reshape='nhwc'"
    with pytest.warns(UserWarning, match=message):
        compute_cam(swin, images, "layers.1")


def test_an_early_swin_stage_is_caught_too(swin, images):
    # layers.0 gives [2, 8, 8, 16]: the last dimension is not far larger than the height, but it is the
    # stage's channel count and the second is not
    with pytest.warns(UserWarning, match=r"'layers.0' gives \(2, 8, 8, 16\), which looks channels-last"):
        compute_cam(swin, images, "layers.0")


def test_convnext_internals_nhwc_and_its_blocks_need_none(images):
    torch.manual_seed(0)
    # conv_mlp=False: each block's norm and MLP run channels-last, [B, h, w, C]
    model = _timm().create_model("convnext_atto", pretrained=False, num_classes=3, conv_mlp=False).eval()
    inner = "stages.2.blocks.1.norm"
    with pytest.warns(UserWarning, match=r"\(2, 2, 2, 160\), which looks channels-last"):
        compute_cam(model, images, inner)
    store: dict[str, torch.Tensor] = {}
    handle = model.stages[2].blocks[1].norm.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        logits = model(images)
    finally:
        handle.remove()
    a = store["a"]
    g = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), a)[0]
    expected = torch.relu((g.mean((1, 2), keepdim=True) * a).sum(-1))
    torch.testing.assert_close(compute_cam(model, images, inner, reshape="nhwc", raw=True), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block = compute_cam(model, images, "stages.2", raw=True)  # a stage's output is [B, C, h, w]
    assert block.shape == (2, 2, 2)
