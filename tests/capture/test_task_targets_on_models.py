"""Each shipped target object on a real torchvision model (random weights), against the hand-written score."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torchvision.models import segmentation
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from cam_callback import CAMEngine, compute_cam
from cam_callback.targets import (
    DetectionTarget,
    MultiLabelTarget,
    NoDetectionsError,
    RegressionTarget,
    SegmentationTarget,
    box_iou,
)


@pytest.fixture(scope="module")
def deeplab() -> torch.nn.Module:
    torch.manual_seed(0)
    model = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    model.eval()
    with torch.no_grad():  # random weights predict class 2 everywhere: make class 1 win
        out = model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))["out"]
        model.classifier[-1].bias[1] += (out.amax(1) - out[:, 1]).median()
    return cast(torch.nn.Module, model)


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0
    )
    return cast(torch.nn.Module, model.eval())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_segmentation_target_equals_the_hand_written_predicted_region(deeplab, images):
    def by_hand(out):
        logits = out["out"]
        return (logits[:, 1] * (logits.argmax(1) == 1)).sum((1, 2))

    ours = compute_cam(deeplab, images, "backbone.16", target=SegmentationTarget(class_index=1), raw=True)
    reference = compute_cam(deeplab, images, "backbone.16", target=by_hand, raw=True)
    torch.testing.assert_close(ours, reference)
    with torch.no_grad():
        predicted = (deeplab(images)["out"].argmax(1) == 1).float().mean()
    assert predicted > 0 and ours.amax() > 0  # a region to explain, and a map that is not empty


def test_segmentation_target_with_the_samples_masks(deeplab, images):
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    masks[0, 8:40, 8:40] = 2
    masks[1, 30:60, 0:20] = 2
    with torch.no_grad():
        out = deeplab(images)["out"]
    expected = (out[:, 2] * (masks == 2)).sum((1, 2))
    target = SegmentationTarget(class_index=2, region="mask").bind(masks=masks)
    torch.testing.assert_close(target(deeplab(images)).detach(), expected)
    # a bool mask is the region itself; the whole image is region="all"
    torch.testing.assert_close(
        SegmentationTarget(1, region="mask").bind(masks=masks == 2)({"out": out}),
        (out[:, 1] * (masks == 2)).sum((1, 2)),
    )
    torch.testing.assert_close(SegmentationTarget(0, region="all")(out), out[:, 0].sum((1, 2)))
    result = CAMEngine(deeplab, "backbone.16")(images, target)
    assert result.classes is None and result.scores.shape == (2,)


def test_segmentation_target_errors(deeplab):
    with pytest.raises(ValueError, match=r"class 5 is out of range for 3 classes"):
        SegmentationTarget(5)(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="needs the batch's masks"):
        SegmentationTarget(1, region="mask")(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="`region`"):
        SegmentationTarget(1, region="pixels")
    with pytest.raises(ValueError, match=r"'aux'"):
        SegmentationTarget(1, output_key="logits")({"aux": torch.zeros(1, 3, 4, 4)})


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_detection_target_best_box_of_a_class(detector, images):
    with torch.no_grad():
        outputs = detector(images)
    expected = []
    for out in outputs:
        of_class = out["scores"][out["labels"] == 1]
        expected.append(of_class.max() if len(of_class) else torch.tensor(0.0))
    torch.testing.assert_close(DetectionTarget(class_index=1)(outputs), torch.stack(expected))
    torch.testing.assert_close(DetectionTarget()(outputs), torch.stack([o["scores"].max() for o in outputs]))

    def by_hand(outs):
        return torch.stack([o["scores"][o["labels"] == 1].max() for o in outs])

    ours = compute_cam(detector, images, "backbone.body.12", target=DetectionTarget(class_index=1), raw=True)
    reference = compute_cam(detector, images, "backbone.body.12", target=by_hand, raw=True)
    torch.testing.assert_close(ours, reference)


def test_detection_target_box_that_overlaps_the_ground_truth(detector, images):
    with torch.no_grad():
        outputs = detector(images)
    truth = torch.tensor([[4.0, 4.0, 30.0, 30.0], [20.0, 10.0, 60.0, 50.0]])
    expected = []
    for out, box in zip(outputs, truth, strict=True):
        overlaps = [float(box_iou(b[None], box[None])) for b in out["boxes"]]
        best = max(range(len(overlaps)), key=lambda i: (overlaps[i], float(out["scores"][i])))
        expected.append(out["scores"][best])
    target = DetectionTarget(match="box").bind(masks=truth)
    torch.testing.assert_close(target(outputs), torch.stack(expected))
    assert target.take(torch.tensor([1]))(outputs[1:]).item() == pytest.approx(float(expected[1]))


def test_a_detector_without_boxes_is_named():
    empty = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    ]
    with pytest.raises(NoDetectionsError, match="no box for any of the 1 samples.*box_score_thresh"):
        DetectionTarget()(empty)
    with pytest.raises(ValueError, match="list of dicts"):
        DetectionTarget()(torch.zeros(2, 3))


def test_multilabel_target_picks_the_highest_scoring_positive_label():
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.0], [3.0, 0.1, 0.2, 0.0], [0.0, 1.0, 2.0, 0.5]])
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]])
    # sample 0: positives 0 (0.5) and 3 (1.0) -> 3; sample 1: 1 (0.1) and 2 (0.2) -> 2;
    # sample 2: no positive label -> its argmax, 2
    target = cast(MultiLabelTarget, MultiLabelTarget().bind(labels=labels))
    assert target.classes(logits).tolist() == [3, 2, 2]
    torch.testing.assert_close(target(logits), torch.tensor([1.0, 0.2, 2.0]))
    torch.testing.assert_close(MultiLabelTarget(class_index=1)(logits), torch.tensor([2.0, 0.1, 1.0]))
    assert target.take(torch.tensor([1, 1]))(logits[[1, 1]]).tolist() == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="needs the batch's multi-hot labels"):
        MultiLabelTarget()(logits)


def test_multilabel_and_regression_targets_on_a_resnet():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=4).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]])
    with torch.no_grad():
        logits = model(x)
    first = 0 if logits[0, 0] >= logits[0, 2] else 2
    ours = compute_cam(model, x, "layer4", target=MultiLabelTarget().bind(labels=labels), raw=True)
    reference = compute_cam(model, x, "layer4", target=[first, 3], raw=True)
    torch.testing.assert_close(ours, reference)
    single = torch.nn.Sequential(model, torch.nn.Linear(4, 1)).eval()
    ours = compute_cam(single, x, "0.layer4", target=RegressionTarget(), raw=True)
    reference = compute_cam(single, x, "0.layer4", target=lambda out: out[:, 0], raw=True)
    torch.testing.assert_close(ours, reference)


def test_regression_target_shapes_and_errors():
    torch.testing.assert_close(RegressionTarget()(torch.tensor([1.5, -2.0])), torch.tensor([1.5, -2.0]))
    torch.testing.assert_close(RegressionTarget()(torch.tensor([[1.5], [-2.0]])), torch.tensor([1.5, -2.0]))
    negated = RegressionTarget(index=1, negate=True)(torch.tensor([[1.0, 3.0]]))
    torch.testing.assert_close(negated, torch.tensor([-3.0]))
    with pytest.raises(ValueError, match=r"gives 2 outputs per sample; pick one with `index` \(0\.\.1\)"):
        RegressionTarget()(torch.zeros(3, 2))


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_a_batch_bound_target_scores_each_perturbed_copy_with_its_own_sample(method):
    """Score-CAM and Ablation-CAM score copies of each sample: the bound labels must follow the rows."""
    from cam_callback.demo import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN(4, width=8).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]])  # one positive each: classes 0 and 3
    bound = MultiLabelTarget().bind(labels=labels)
    batch = compute_cam(model, x, "features.5", method=method, target=bound, raw=True, chunk_size=12)

    def one_by_one(classes):
        maps = []
        for i, c in enumerate(classes):
            target = MultiLabelTarget(c)
            one = compute_cam(model, x[i : i + 1], "features.5", method=method, raw=True, target=target)
            maps.append(one)
        return torch.cat(maps)

    assert batch.amax() > 0
    torch.testing.assert_close(batch, one_by_one([0, 3]), rtol=1e-3, atol=1e-4)  # batched convs round apart
    assert not torch.allclose(batch, one_by_one([3, 0]), rtol=1e-2, atol=1e-3)  # the rows' classes matter
