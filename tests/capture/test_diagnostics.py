"""Maps zero for every sample: two causes, two messages; the guided methods' saliencies are not checked."""

from __future__ import annotations

import warnings
from typing import cast

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from cam_callback import compute_cam
from cam_callback.capture.diagnostics import warn_if_all_zero, warn_if_not_finite

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
ZERO = torch.zeros(2, 3, 3)
SOME = torch.tensor([[[0.0, 1.0, 0.0]] * 3] * 2)  # one position above zero per sample

RELU_CAUSE = (
    "every {method} map at layer 'conv' is zero for all 2 samples: the weighted activations are negative at "
    "every position, so the ReLU leaves nothing (the layer holds evidence against the target); try {others}, "
    "another target or layer"
)


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("method", "others"),
    [("gradcam", "'layercam' or 'hirescam'"), ("layercam", "'hirescam'"), ("hirescam", "'layercam'")],
)
def test_a_negative_weighted_sum_is_blamed_on_the_relu(method: str, others: str) -> None:
    raw = {("conv", method): ZERO, ("other", method): SOME}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flagged = warn_if_all_zero(nn.Identity(), raw, skip=frozenset())
    assert flagged == [f"conv/{method}"]
    assert _messages(caught) == [RELU_CAUSE.format(method=method, others=others)]
    assert caught[0].category is UserWarning


def test_no_gradient_at_the_layer_on_an_unknown_model_suggests_an_earlier_layer() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flagged = warn_if_all_zero(nn.Identity(), {("conv", "gradcam"): ZERO}, frozenset(), {"conv"})
    assert flagged == ["conv/gradcam"]
    (message,) = _messages(caught)
    assert message.startswith(
        "every gradcam map at layer 'conv' is zero for all 2 samples: the target's gradient is zero at every "
        "position of this layer"
    )
    fix = "use an earlier layer (in a ViT, a block's first LayerNorm, e.g. 'blocks.N.norm1')"
    assert message.endswith(fix)
    assert "ReLU leaves nothing" not in message


def _tv_vit() -> nn.Module:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3
    )
    return cast(nn.Module, model.eval())


def test_no_gradient_at_the_layer_of_a_known_family_names_its_layer() -> None:
    layer = "encoder.layers.encoder_layer_1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_all_zero(_tv_vit(), {(layer, "gradcam"): ZERO}, frozenset(), {layer})
    (message,) = _messages(caught)
    expected = (
        "use layer 'encoder.layers.encoder_layer_1.ln_1' with reshape='tokens' (torchvision ViT: the last "
        "encoder layer's ln_1)"
    )
    assert message.endswith(expected)


def test_guided_methods_empty_maps_and_maps_with_a_value_are_not_flagged() -> None:
    raw = {
        ("conv", "guided-backprop"): ZERO,  # an input saliency, skipped
        ("conv", "guided-gradcam"): ZERO,
        ("conv", "gradcam"): SOME,
        ("conv", "eigencam"): torch.zeros(0, 3, 3),  # no samples
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flagged = warn_if_all_zero(nn.Identity(), raw, {"guided-backprop", "guided-gradcam"}, {"conv"})
    assert flagged == [] and caught == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flagged = warn_if_all_zero(nn.Identity(), raw, {"guided-backprop"}, {"conv"})
    assert flagged == ["conv/guided-gradcam"] and len(caught) == 1  # checked when not skipped


# Through the engine ----------------------------------------------------------------------------------------


def test_a_map_zero_for_every_sample_warns_and_names_a_better_layer():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    options = {"img_size": 32, "patch_size": 8, "num_classes": 3, "depth": 2, "embed_dim": 32, "num_heads": 2}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **options).eval()
    # the last block's output reaches the head only through the class token: patch tokens get no gradient
    with pytest.warns(UserWarning, match=r"every gradcam map at layer 'blocks.1' is zero for all 2 samples.*"
                      r"use layer 'blocks.1.norm1' with reshape='tokens'"):
        maps = compute_cam(model, X, "blocks.1", reshape="tokens", raw=True)
    assert maps.abs().amax() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_cam(model, X, "blocks.1.norm1", reshape="tokens")


def test_a_map_zero_from_the_relu_alone_says_so():
    """One channel, weight -1 after the layer: the gradient is -1 everywhere, so Grad-CAM is ReLU(-A) = 0."""
    model = nn.Sequential(
        nn.Conv2d(3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1)
    )
    with torch.no_grad():
        cast(nn.Conv2d, model[0]).weight.fill_(1.0)
        cast(Tensor, cast(nn.Conv2d, model[0]).bias).fill_(1.0)  # positive activations
        cast(nn.Linear, model[4]).weight.fill_(-1.0)
    x = torch.rand(2, 3, 4, 4)
    message = r"'1' is zero for all 2 samples: the weighted activations are negative"
    with pytest.warns(UserWarning, match=message):
        maps = compute_cam(model, x, "1", target=lambda out: out[:, 0], raw=True)
    assert maps.abs().amax() == 0


class NanOutput(nn.Module):
    """A convolution, then logits that are NaN for the samples ``poisoned`` lists."""

    def __init__(self, poisoned: list[int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.poisoned = poisoned

    def forward(self, x: Tensor) -> Tensor:
        logits = cast(Tensor, self.head(self.conv(x)))
        poison = torch.zeros(len(x), 1)
        poison[self.poisoned] = float("nan")
        return logits + poison


def test_nan_outputs_are_named_as_nan_and_their_maps_stay_nan_raw_or_normalised() -> None:
    torch.manual_seed(0)
    model = NanOutput(poisoned=[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = compute_cam(model, X, "conv", raw=True)
        normalised = compute_cam(model, X, "conv")
    messages = _messages(caught)
    assert not any("negative at every position" in m for m in messages)
    said = [m for m in messages if "NaN" in m]
    assert said and all("output" in m and "sample 1 of 2" in m for m in said)
    assert torch.isnan(raw[1]).all() and torch.isnan(normalised[1]).all()
    assert torch.isfinite(raw[0]).all() and torch.isfinite(normalised[0]).all()  # the other sample is fine


def test_nan_in_every_map_is_not_blamed_on_the_relu() -> None:
    raw = {("conv", "gradcam"): torch.full((2, 3, 3), float("nan"))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_all_zero(nn.Identity(), raw, skip=frozenset()) == []
        assert warn_if_not_finite(torch.zeros(2), raw) == ["conv/gradcam"]
    assert _messages(caught) == [
        "the gradcam map at layer 'conv' holds NaN for samples 0, 1 of 2 (the layer's activations or "
        "gradients overflow or are NaN): these maps are NaN and left out of the drift numbers"
    ]
