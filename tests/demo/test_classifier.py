import warnings
from typing import cast

import pytest
import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentParser
from lightning_fabric.utilities.data import AttributeDict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cam_callback.demo import ShapesDataModule
from cam_callback.demo.classifier import ImageClassifier, TinyCNN, build_model, images_and_labels, model_names


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        yield


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def _tuple_loaders(
    num_classes: int, size: int, n: int = 8, batch_size: int = 4
) -> tuple[DataLoader, DataLoader]:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, size, size, generator=gen), torch.arange(n) % num_classes)
    return DataLoader(data, batch_size=batch_size, shuffle=True), DataLoader(data, batch_size=batch_size)


def test_tinycnn_shapes_and_last_feature_layer():
    model = TinyCNN(num_classes=5)
    assert isinstance(model.features[-1], nn.Conv2d)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 5)
    assert model.features(x).shape == (2, 64, 8, 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_forward_returns_logits():
    model = ImageClassifier("tinycnn", num_classes=3)
    assert model(torch.randn(4, 3, 64, 64)).shape == (4, 3)
    assert isinstance(model.model, TinyCNN)
    assert cast(AttributeDict, model.hparams).arch == "tinycnn"
    assert cast(AttributeDict, model.hparams).num_classes == 3


def test_forward_unwraps_auxiliary_outputs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's note on GoogLeNet's default initialisation
        model = ImageClassifier("googlenet", num_classes=3)
    model.train()
    logits = model(torch.randn(2, 3, 64, 64))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3)


def test_images_and_labels_reads_dicts_and_tuples():
    x, y = torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])
    for batch in ({"image": x, "label": y, "mask": torch.zeros(2, 4, 4)}, (x, y), [x, y, "extra"]):
        got_x, got_y = images_and_labels(batch)
        assert got_x is x and got_y is y
    with pytest.raises(TypeError, match="'image' and 'label'"):
        images_and_labels({"img": x})
    with pytest.raises(TypeError, match="batch must be"):
        images_and_labels(x)


def test_build_model_for_torchvision_arch():
    model = build_model("resnet18", num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert "tinycnn" in model_names() and "resnet18" in model_names()


def test_unknown_arch_suggests_close_names():
    with pytest.raises(ValueError, match=r"`arch`: unknown model 'resnet-18'; closest: 'resnet18'"):
        ImageClassifier("resnet-18")
    with pytest.raises(ValueError, match="tinycnn"):
        build_model("tinycnm", 3)
    with pytest.raises(TypeError, match="`arch`"):
        build_model(18, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 0}, ValueError, "`num_classes`"),
        ({"num_classes": 2.0}, TypeError, "`num_classes`"),
        ({"lr": 0.0}, ValueError, "`lr`"),
        ({"weight_decay": -1.0}, ValueError, "`weight_decay`"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageClassifier("tinycnn", **kwargs)


def test_fit_tinycnn_on_dict_batches_logs_metrics():
    dm = ShapesDataModule(num_train=8, num_val=8, image_size=32, num_classes=3, batch_size=4)
    model = ImageClassifier("tinycnn", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(fast_dev_run=2)
    trainer.fit(model, dm)
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(trainer.callback_metrics)
    assert 0.0 <= float(trainer.callback_metrics["val/acc"]) <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_fit_resnet18_on_tuple_batches():
    train, val = _tuple_loaders(num_classes=4, size=32)
    model = ImageClassifier("resnet18", num_classes=4)
    trainer = _trainer(fast_dev_run=2)
    trainer.fit(model, train, val)
    assert {"train/loss", "val/loss", "val/acc"} <= set(trainer.callback_metrics)
    trainer.test(model, val, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)


def test_cosine_schedule_decays_learning_rate():
    train, val = _tuple_loaders(num_classes=2, size=16)
    model = ImageClassifier("tinycnn", num_classes=2, lr=1e-2, cosine=True)
    trainer = _trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, train, val)
    optimizer = trainer.optimizers[0]
    assert len(trainer.lr_scheduler_configs) == 1 and trainer.lr_scheduler_configs[0].interval == "step"
    assert optimizer.param_groups[0]["lr"] < 1e-3  # four steps of four: at the end of the cosine
    assert isinstance(optimizer, torch.optim.AdamW)


def test_plain_optimizer_without_cosine():
    model = ImageClassifier("tinycnn", num_classes=2, lr=5e-4, weight_decay=0.1)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 5e-4 and optimizer.defaults["weight_decay"] == 0.1


def test_builds_from_parsed_arguments():
    parser = ArgumentParser()
    parser.add_class_arguments(ImageClassifier, "model")
    cfg = parser.parse_args(["--model.arch=tinycnn", "--model.num_classes=6", "--model.cosine=true"])
    model = getattr(parser, "instantiate", parser.instantiate_classes)(cfg).model
    assert isinstance(model, ImageClassifier) and cast(AttributeDict, model.hparams).num_classes == 6
    assert model.cosine
