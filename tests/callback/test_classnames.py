"""The class names for captions: given as `class_names`, or read from the data module or dataset."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from cam_callback import GradCAMCallback
from cam_callback.callback.classnames import check_class_names, find_class_names


class Named(TensorDataset):
    classes = ["circle", "square", "triangle"]


def test_names_are_found_on_the_data_module_or_through_dataset_wrappers():
    class Module:
        classes = ["x", "y"]

    data = Named(torch.zeros(2, 3, 8, 8), torch.zeros(2))
    loader = torch.utils.data.DataLoader(Subset(Subset(data, [0, 1]), [0]))
    assert find_class_names(Module(), loader) == ["x", "y"]
    assert find_class_names(None, loader) == ["circle", "square", "triangle"]
    assert find_class_names(None, torch.utils.data.DataLoader(TensorDataset(torch.zeros(1)))) is None


def test_class_names_must_be_a_list_of_str():
    assert check_class_names(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="`class_names` must be a list of str"):
        GradCAMCallback(class_names="circle")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`class_names` must hold only str"):
        GradCAMCallback(class_names=["a", 2])  # type: ignore[list-item]


def test_a_fit_captions_with_the_data_modules_classes_or_the_given_names(tmp_path, monkeypatch):
    import pytorch_lightning as pl
    from lit_models import loaders, make_module_class

    import cam_callback.callback.handover as handover  # the writer draws the captions there

    seen: list[Any] = []
    real = handover.captions_for
    signature = inspect.signature(real)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(list(signature.bind(*args, **kwargs).arguments.get("names") or []))
        return real(*args, **kwargs)

    monkeypatch.setattr(handover, "captions_for", spy)

    class Data(pl.LightningDataModule):
        classes = ["circle", "square", "triangle"]

        def train_dataloader(self):
            return loaders()[0]

        def val_dataloader(self):
            return loaders()[1]

    for given, expected in ((None, Data.classes), (["a", "b", "c"], ["a", "b", "c"])):
        callback = GradCAMCallback(layer="features.3", num_samples=2, class_names=given)
        trainer = pl.Trainer(
            max_epochs=1, callbacks=[callback], logger=False, default_root_dir=str(tmp_path),
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        )
        seen.clear()
        trainer.fit(make_module_class(pl)(), datamodule=Data())
        # The step-0 frame when training starts and the epoch's validation, both captioned with the names.
        assert seen == [expected, expected]
