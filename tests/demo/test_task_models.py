"""The demo's task models: the documented outputs, their losses written out, the network under ``model``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cam_callback.demo import ShapesDetector, ShapesMultiLabel, ShapesRegressor, ShapesSegmenter

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_the_segmenter_gives_class_logits_for_every_pixel():
    torch.manual_seed(0)
    model = ShapesSegmenter(num_classes=4).eval()
    out = model(X)
    assert set(out) == {"out"} and out["out"].shape == (2, 4, 32, 32)
    masks = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    # Pixel-wise cross-entropy written out: mean over pixels of logsumexp - the true class's logit.
    logits = out["out"].detach()
    true = logits.gather(1, masks[:, None])[:, 0]
    expected = (logits.logsumexp(dim=1) - true).mean()
    loss = model.loss({"image": X, "mask": masks})
    assert loss.shape == () and loss.requires_grad
    torch.testing.assert_close(loss.detach(), expected)
    assert isinstance(model.get_submodule("model.classifier.cbr"), nn.Module)  # the config's layer


def test_the_detector_gives_boxes_labels_and_scores_per_image():
    torch.manual_seed(0)
    model = ShapesDetector(num_classes=4, image_size=32, box_score_thresh=0.0).eval()
    detections = model(X)
    assert isinstance(detections, list) and len(detections) == 2
    for found in detections:
        assert set(found) == {"boxes", "labels", "scores"}
        count = len(found["scores"])
        assert found["boxes"].shape == (count, 4) and found["labels"].shape == (count,)
        assert bool(((found["labels"] >= 1) & (found["labels"] <= 3)).all())  # 0 is the background
        assert bool(((found["boxes"] >= 0) & (found["boxes"] <= 32)).all())
    assert sum(len(found["scores"]) for found in detections) > 0  # a threshold of 0 keeps boxes


def test_the_detectors_training_loss_is_the_sum_of_torchvisions_losses():
    torch.manual_seed(0)
    model = ShapesDetector(num_classes=4, image_size=32).train()
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 20.0, 24.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[10.0, 2.0, 30.0, 12.0]]), "labels": torch.tensor([3])},
    ]
    torch.manual_seed(5)  # the detector samples proposals: the same draws for both computations
    loss = model.loss((list(X), targets))
    torch.manual_seed(5)
    parts = model.model(list(X), targets)
    assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert loss.shape == () and math.isfinite(float(loss))
    torch.testing.assert_close(loss.detach(), sum(part.detach() for part in parts.values()))


def test_the_multilabel_model_gives_one_logit_per_class_and_binary_cross_entropy():
    torch.manual_seed(0)
    model = ShapesMultiLabel(num_classes=3).eval()
    images = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(2))  # two shapes side by side
    logits = model(images)
    assert logits.shape == (2, 3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # -(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), averaged over every entry
    p = torch.sigmoid(logits.detach().double())
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    loss = model.loss({"image": images, "label": labels.long()})  # integer multi-hot labels are taken too
    torch.testing.assert_close(loss.detach().double(), expected)
    assert isinstance(model.get_submodule("model.features.7"), nn.Conv2d)


def test_the_regressor_gives_one_number_and_the_mean_squared_error():
    torch.manual_seed(0)
    model = ShapesRegressor().eval()
    prediction = model(X)
    assert prediction.shape == (2, 1)
    targets = torch.tensor([0.25, 0.5])
    expected = ((prediction.detach()[0, 0] - 0.25) ** 2 + (prediction.detach()[1, 0] - 0.5) ** 2) / 2
    torch.testing.assert_close(model.loss({"image": X, "label": targets}).detach(), expected)


def test_every_model_trains_its_parameters_with_adamw_at_its_rate():
    model = ShapesRegressor(lr=0.01)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: ShapesSegmenter(num_classes=1), ValueError, r"`num_classes` must be at least 2, got 1"),
        (lambda: ShapesMultiLabel(num_classes=1), ValueError, r"`num_classes` must be at least 2, got 1"),
        (lambda: ShapesDetector(image_size=8), ValueError, r"`image_size` must be at least 16, got 8"),
        (lambda: ShapesRegressor(lr=-1.0), ValueError, r"`lr` must be a finite number >= 0, got -1\.0"),
        (
            lambda: ShapesDetector(box_score_thresh="high"),  # type: ignore[arg-type]
            TypeError,
            r"`box_score_thresh` must be a number, got str 'high'",
        ),
    ],
)
def test_bad_arguments_are_refused_by_name(build, error, message):
    with pytest.raises(error, match=message):
        build()
