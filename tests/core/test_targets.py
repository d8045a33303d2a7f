"""Choosing the score to explain: the accepted forms, 'predicted', classes, callables, rows of a batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from cam_callback import CAMEngine, compute_cam
from cam_callback.core.targets import (
    TARGET_WORDS,
    FinerTarget,
    MultiLabelTarget,
    ScoreTarget,
    check_target,
    select_scores,
    target_for_rows,
)

LOGITS = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2]])


@pytest.mark.parametrize(
    ("target", "classes", "scores"),
    [
        ("predicted", [1, 0], [2.0, 3.0]),
        (2, [2, 2], [-1.0, 0.2]),
        (0, [0, 0], [0.1, 3.0]),
        ([0, 2], [0, 2], [0.1, 0.2]),
        ((1, 1), [1, 1], [2.0, 0.5]),
        (torch.tensor([2, 1]), [2, 1], [-1.0, 0.5]),
        (torch.tensor([2, 1], dtype=torch.int32), [2, 1], [-1.0, 0.5]),
    ],
)
def test_class_targets_pick_the_right_scores(target, classes: list[int], scores: list[float]) -> None:
    got_scores, got_classes = select_scores(LOGITS, target)
    assert got_classes is not None
    assert got_classes.tolist() == classes
    torch.testing.assert_close(got_scores, torch.tensor(scores))


def test_callable_target_on_dict_outputs() -> None:
    outputs = {"logits": LOGITS, "aux": torch.zeros(2)}
    scores, classes = select_scores(outputs, lambda out: out["logits"][:, 1] - out["logits"][:, 0])
    assert classes is None
    torch.testing.assert_close(scores, torch.tensor([1.9, -2.5]))


@pytest.mark.parametrize(("target", "bad"), [(3, 3), (-1, -1), ([0, 3], 3), (torch.tensor([-2, 0]), -2)])
def test_out_of_range_classes(target, bad: int) -> None:
    with pytest.raises(ValueError, match=rf"class {bad} is out of range for 3 classes \(valid: 0\.\.2\)"):
        select_scores(LOGITS, target)


@pytest.mark.parametrize("target", [[0], [0, 1, 2], torch.tensor([1])])
def test_wrong_number_of_classes(target) -> None:
    with pytest.raises(ValueError, match=r"`target`: \d classes given for a batch of 2"):
        select_scores(LOGITS, target)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (True, "must not be a bool"),
        (torch.tensor([0.0, 1.0]), "must be integers"),
        (1.5, "must be 'predicted'"),
    ],
)
def test_wrong_target_types(target, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        select_scores(LOGITS, target)


def test_unknown_target_string() -> None:
    with pytest.raises(ValueError, match="`target`: unknown 'max'"):
        select_scores(LOGITS, "max")


def test_label_is_a_known_word_that_only_the_caller_can_resolve() -> None:
    message = r"'label' needs each sample's true class, which only the caller holds"
    with pytest.raises(ValueError, match=message):
        select_scores(LOGITS, "label")


def test_callable_must_return_one_score_per_sample() -> None:
    with pytest.raises(ValueError, match=r"one score per sample, shape \[B\]; got \(2, 3\)"):
        select_scores(LOGITS, lambda out: out)


def test_non_logit_outputs_need_a_callable() -> None:
    with pytest.raises(ValueError, match="not \\[B, classes\\] logits; pass `target` as a target object"):
        select_scores({"logits": LOGITS}, 0)


# Through the engine ----------------------------------------------------------------------------------------


def test_predicted_is_the_argmax_of_the_same_forward(tiny_net, images) -> None:
    expected = fresh_eval_logits(tiny_net, images)
    engine = CAMEngine(tiny_net, "features.3", "gradcam")
    tiny_net.forward_calls = 0
    result = engine(images)
    assert tiny_net.forward_calls == 1
    assert result.classes is not None
    assert torch.equal(result.classes, expected.argmax(dim=1))
    torch.testing.assert_close(result.scores, expected.max(dim=1).values)
    torch.testing.assert_close(result.outputs, expected)
    assert not result.outputs.requires_grad


def test_compute_cam_runs_one_forward(tiny_net, images) -> None:
    tiny_net.forward_calls = 0
    compute_cam(tiny_net, images, "features.3")
    assert tiny_net.forward_calls == 1


def test_engine_with_two_layers_and_three_methods_runs_one_forward(tiny_net, images) -> None:
    engine = CAMEngine(tiny_net, ["features.3", "features.0"], ["gradcam", "layercam", "eigencam"])
    tiny_net.forward_calls = 0
    result = engine(images, target=[0, 4])
    assert tiny_net.forward_calls == 1
    assert len(result.raw) == 6


def test_target_forms_select_the_same_map(tiny_net, images) -> None:
    predicted = fresh_eval_logits(tiny_net, images).argmax(dim=1)
    by_prediction = compute_cam(tiny_net, images, "features.3", target="predicted")
    for target in (predicted.tolist(), predicted, lambda out: out.gather(1, predicted[:, None])[:, 0]):
        torch.testing.assert_close(compute_cam(tiny_net, images, "features.3", target=target), by_prediction)
    other = [(int(c) + 1) % 5 for c in predicted]
    assert not torch.allclose(compute_cam(tiny_net, images, "features.3", target=other, raw=True),
                              compute_cam(tiny_net, images, "features.3", target=predicted, raw=True))


class DictOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self.inner(x), "extra": x.mean()}


def test_callable_target_on_a_dict_model(tiny_net, images) -> None:
    wrapped = DictOutput(tiny_net)
    engine = CAMEngine(wrapped, "inner.features.3", "gradcam")
    result = engine(images, target=lambda out: out["logits"][:, 2])
    assert result.classes is None
    assert set(result.outputs) == {"logits", "extra"}
    expected = compute_cam(tiny_net, images, "features.3", target=2)
    torch.testing.assert_close(result.normalized("inner.features.3", "gradcam"), expected)
    with pytest.raises(ValueError, match="pass `target` as a target object .* or a callable"):
        compute_cam(wrapped, images, "inner.features.3", target=2)


def test_out_of_range_and_wrong_length_through_compute_cam(tiny_net, images) -> None:
    with pytest.raises(ValueError, match="class 5 is out of range for 5 classes"):
        compute_cam(tiny_net, images, "features.3", target=5)
    with pytest.raises(ValueError, match="3 classes given for a batch of 2"):
        compute_cam(tiny_net, images, "features.3", target=[0, 1, 2])


def fresh_eval_logits(model: nn.Module, images: Tensor) -> Tensor:
    """The model's logits in eval mode from a separate forward, leaving its mode as it was."""
    training = model.training
    model.eval()
    with torch.no_grad():
        logits: Tensor = model(images)
    model.train(training)
    return logits


# The one validator -----------------------------------------------------------------------------------------


class RowTarget(ScoreTarget):
    """A target that scores each sample by the class it holds for that sample's row of the bound batch."""

    uses_batch = True

    def __init__(self) -> None:
        self.classes: Tensor | None = None

    def bind(self, labels: Tensor | None = None, masks: Tensor | None = None) -> ScoreTarget:
        bound = RowTarget()
        bound.classes = labels
        return bound

    def take(self, samples: Tensor) -> ScoreTarget:
        taken = RowTarget()
        taken.classes = None if self.classes is None else self.classes[samples]
        return taken

    def __call__(self, outputs: Tensor) -> Tensor:
        assert self.classes is not None
        return outputs.gather(1, self.classes[:, None])[:, 0]


def _score_first(outputs: Tensor) -> Tensor:
    return outputs[:, 0]


ACCEPTED = [None, "predicted", "label", 0, 7, [0, 2], (1, 1), torch.tensor([2, 1]), RowTarget(), _score_first]


@pytest.mark.parametrize("target", ACCEPTED, ids=lambda t: type(t).__name__)
def test_every_accepted_form_comes_back_as_it_is(target) -> None:
    assert check_target(target) is target


def test_the_words_are_label_and_predicted() -> None:
    assert TARGET_WORDS == ("label", "predicted")


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("max", ValueError, r"^`target`: unknown 'max'; use 'label', 'predicted', a class index, per-sample "
                            r"classes, a target object \(cam_callback\.targets\) or a callable$"),
        ("predicted_class", ValueError, r"unknown 'predicted_class' \(did you mean 'predicted'\?\)"),
        ("labels", ValueError, r"unknown 'labels' \(did you mean 'label'\?\)"),
        (True, TypeError, r"^`target` must not be a bool$"),
        (-1, ValueError, r"^`target` must be at least 0, got -1$"),
        (1.5, TypeError, r"^`target` must be 'predicted', 'label', an int, .* a callable; got float$"),
        ({"class": 1}, TypeError, r"a target object or a callable; got dict$"),
    ],
)
def test_every_refused_form_names_the_argument(target, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_target(target)


def test_rows_of_a_bound_target_are_taken_by_the_target() -> None:
    bound = RowTarget().bind(labels=torch.tensor([2, 0, 1]))
    rows = target_for_rows(bound, torch.tensor([2, 2, 0]))
    assert isinstance(rows, RowTarget) and rows is not bound
    assert rows.classes is not None and rows.classes.tolist() == [1, 1, 2]
    copies = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert rows(copies).tolist() == [1.0, 4.0, 8.0]  # class 1, 1, 2 of each row


def test_a_shipped_target_takes_its_rows_too() -> None:
    labels = torch.tensor([[1, 0, 0], [0, 0, 1]])
    bound = MultiLabelTarget().bind(labels=labels)
    taken = target_for_rows(bound, torch.tensor([1, 1, 0]))
    assert isinstance(taken, MultiLabelTarget)
    # the only positive label of each row: 2, 2, 0
    assert taken.classes(torch.zeros(3, 3)).tolist() == [2, 2, 0]


def test_anything_else_is_returned_as_it_is() -> None:
    classes = torch.tensor([1, 0])
    assert target_for_rows(_score_first, torch.tensor([0, 0])) is _score_first
    assert target_for_rows(classes, torch.tensor([1])) is classes
    plain = MultiLabelTarget(class_index=1)  # holds nothing of the batch: its take is itself
    assert target_for_rows(plain, torch.tensor([0, 1])) is plain


# Finer-CAM's target -----------------------------------------------------------------------------------------

FINER_LOGITS = [[3.0, 1.0, 2.0, 0.0, -1.0]]


def test_finer_target_by_hand() -> None:
    e = math.e
    logits = torch.tensor(FINER_LOGITS, requires_grad=True)
    # Predicted class 0 (3); the closest others 2 (2), 1 (1), 3 (0), weighted e^2 : e : 1 (softmax, the
    # common factor cancels); contrasts 1, 2, 3.
    total = e**2 + e + 1
    score = FinerTarget()(logits)
    torch.testing.assert_close(score, torch.tensor([(e**2 * 1 + e * 2 + 3) / total]))
    # The weights are held fixed: the gradient is the one-hot of the class minus the weighted others, and
    # class 4, outside the comparison, gets none (through the softmax it would).
    (gradient,) = torch.autograd.grad(score.sum(), logits)
    torch.testing.assert_close(gradient, torch.tensor([[1.0, -e / total, -(e**2) / total, -1 / total, 0.0]]))
    # Class 3 compares with 0, 2, 1 (never with itself): contrasts -3, -2, -1, weights e^3 : e^2 : e.
    expected = (-3 * e**3 - 2 * e**2 - e) / (e**3 + e**2 + e)
    torch.testing.assert_close(FinerTarget(class_index=3)(logits), torch.tensor([expected]))
    # alpha 0: the plain logit; ranks [2] and alpha 0.5: 3 - 1/2 of class 1's logit.
    torch.testing.assert_close(FinerTarget(alpha=0)(logits), torch.tensor([3.0]))
    torch.testing.assert_close(FinerTarget(ranks=[2], alpha=0.5)(logits), torch.tensor([2.5]))


def test_finer_target_ranks_past_the_classes_and_bad_arguments() -> None:
    two = torch.tensor([[1.0, 4.0]])
    torch.testing.assert_close(FinerTarget()(two), torch.tensor([3.0]))  # only rank 1 exists: 4 - 1
    with pytest.raises(ValueError, match="no class to compare against"):
        FinerTarget()(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="expected logits"):
        FinerTarget()(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="`ranks` must hold at least one"):
        FinerTarget(ranks=[])
    with pytest.raises(ValueError, match="`ranks`"):
        FinerTarget(ranks=[0])
    with pytest.raises(TypeError, match="`ranks` must be a list of ints"):
        FinerTarget(ranks="12")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`alpha` must be a finite number"):
        FinerTarget(alpha=float("nan"))
    assert check_target(FinerTarget()) is not None
