"""The callback on a timm ViT with register tokens: the automatic layer and reshape, and a refusal."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from lit_models import tiny_data
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader

from cam_callback import CAMConfigurationError, GradCAMCallback

timm = pytest.importorskip("timm")

QUIET: dict[str, Any] = {
    "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False
}


class Classifier(pl.LightningModule):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.model = network

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, index):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, index):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, network, callback):
    pl.seed_everything(0, verbose=False)
    train, val = tiny_data(4, 1, size=32), tiny_data(2, 2, size=32)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[callback], logger=TensorBoardLogger(str(tmp_path), name="run"), **QUIET
    )
    trainer.fit(Classifier(network), DataLoader(train, batch_size=2), DataLoader(val, batch_size=2))
    return trainer


def test_automatic_layer_on_a_vit_with_register_tokens(tmp_path):
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=3, depth=2,
        embed_dim=32, num_heads=2, reg_tokens=4,
    )
    callback = GradCAMCallback(num_samples=2, strict=True)
    with pytest.warns(UserWarning, match=r"explaining 'model.blocks.1.norm1', reshape='tokens' \(timm ViT"):
        _fit(tmp_path, vit, callback)
    assert callback.layers == ["model.blocks.1.norm1"]
    frames = callback.history.frames()[("model.blocks.1.norm1", "gradcam")]
    # the frame when training starts and one validation
    assert frames.shape[:2] == (2, 2) and bool((frames.flatten(2).amax(2) > 0).all())  # real maps
    assert callback.state_dict()["auto_reshape"] == "tokens"  # a resumed run uses the same reshape


class TokenMixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.norm(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


def test_an_unknown_token_model_is_refused_before_any_map(tmp_path):
    callback = GradCAMCallback(num_samples=2)  # not strict: a configuration error is raised all the same
    message = r"cannot pick a layer of Classifier automatically.*'model.norm'"
    with pytest.raises(CAMConfigurationError, match=message):
        _fit(tmp_path, TokenMixer(), callback)
