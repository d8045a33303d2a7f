"""The automatic layer: known transformers, detectors and segmenters, else the last feature map."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer, resnet18, segmentation
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from cam_callback import compute_cam
from cam_callback.capture.auto_layer import LayerChoice, choose_layer

timm = pytest.importorskip("timm")

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _timm_vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    options = {"img_size": 32, "patch_size": 8, "num_classes": 3, "depth": 2, "embed_dim": 32, "num_heads": 2}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **options, **kwargs)
    return cast(nn.Module, model.eval())


def _tv_vit() -> nn.Module:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3
    )
    return cast(nn.Module, model.eval())


def test_known_families_get_a_proper_layer_and_reshape():
    wrapped = nn.Module()
    wrapped.model = _timm_vit(reg_tokens=4)
    expected = LayerChoice("model.blocks.1.norm1", "tokens", "timm ViT: the last block's first LayerNorm")
    assert choose_layer(wrapped, X) == expected
    assert choose_layer(_tv_vit(), X).layer == "encoder.layers.encoder_layer_1.ln_1"
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=32, num_classes=3, depths=(1, 1),
        embed_dim=16, num_heads=(1, 1), window_size=2,
    )
    assert (choose_layer(swin, X).layer, choose_layer(swin, X).reshape) == ("layers.1", "nhwc")
    detector = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    assert choose_layer(detector, X).layer == "backbone.body.16"
    segmenter = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    assert choose_layer(segmenter, X).layer == "backbone.16"
    assert choose_layer(resnet18(weights=None, num_classes=3), torch.rand(2, 3, 64, 64)) == LayerChoice(
        "layer4", None, "the last module with a spatial output"
    )


def test_the_chosen_vit_layer_gives_real_maps():
    model = _timm_vit()
    choice = choose_layer(model, X)
    maps = compute_cam(model, X, choice.layer, reshape=choice.reshape, raw=True)
    assert maps.shape == (2, 4, 4) and bool((maps.flatten(1).amax(1) > 0).all())


class _TokenMixer(nn.Module):
    """An unknown token model: a conv patch embedding, then attention over tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.norm(tokens + self.attn(tokens, tokens, tokens)[0])
        return self.head(tokens.mean(1))


def test_an_unknown_token_model_is_refused_with_candidates():
    with pytest.raises(ValueError, match=r"cannot pick a layer of _TokenMixer.*'embed'.*one of .*'norm'"):
        choose_layer(_TokenMixer(), X)
