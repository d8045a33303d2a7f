"""The host copy a validation hands to the writer, and the images drawn from it there."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from cam_callback.callback.captions import captions_for
from cam_callback.callback.handover import Drawing, draw_records, hand_over, to_host
from cam_callback.callback.publishing import Display, validation_records
from cam_callback.callback.samples import FixedBatch
from cam_callback.capture.engine import CAMResult

KEY = ("layer4", "gradcam")


def _result() -> CAMResult:
    outputs = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    return CAMResult({KEY: torch.rand(2, 2, 2)}, outputs, torch.tensor([0, 1]), torch.zeros(2), (4, 4))


def test_to_host_copies_tensors_in_containers_and_drops_anything_else():
    Pair = namedtuple("Pair", "a b")
    value = {"boxes": [torch.ones(2, 4)], "n": 3, "pair": Pair(torch.zeros(1), 1), "t": (torch.zeros(2),)}
    host = to_host(value)
    assert torch.equal(host["boxes"][0], torch.ones(2, 4)) and isinstance(host["boxes"], list)
    assert host["n"] is None and host["pair"] is None
    assert isinstance(host["t"], tuple) and torch.equal(host["t"][0], torch.zeros(2))
    leaf = torch.ones(3, requires_grad=True) * 2
    assert not to_host(leaf).requires_grad  # detached: no graph reaches the writer


def test_a_cpu_hand_over_waits_for_nothing_and_keeps_no_raw_maps():
    result, maps = _result(), {KEY: torch.rand(2, 4, 4)}
    drawing = hand_over(result, maps, FixedBatch(torch.rand(2, 3, 4, 4), torch.tensor([0, 2])))
    assert drawing.ready is None and drawing.result.raw == {}
    assert torch.equal(drawing.maps[KEY], maps[KEY]) and torch.equal(drawing.result.outputs, result.outputs)
    assert drawing.result.classes is not None and drawing.result.classes.device.type == "cpu"
    assert all(t.device.type == "cpu" for t in drawing.maps.values())


def test_the_writer_draws_what_the_training_thread_would_have_drawn():
    result, maps = _result(), {KEY: torch.rand(2, 4, 4)}
    batch = FixedBatch(torch.rand(2, 3, 20, 20), torch.tensor([0, 2]))
    display = Display(min_tile=40)
    drawn = draw_records(Drawing(result, maps, batch), "classification", None, ["a", "b", "c"], 5, display)

    def texts(width: int) -> list[str] | None:
        return captions_for("classification", result, batch.labels, None, ["a", "b", "c"], width)

    expected = validation_records(result, maps, batch.inputs, 5, display, texts=texts)
    tags = ["cam/layer4/gradcam", "cam_heatmap/layer4/gradcam"]
    assert [r.tag for r in drawn] == [r.tag for r in expected] == tags
    assert all(torch.equal(a.image, b.image) and a.step == 5 for a, b in zip(drawn, expected, strict=True))
    # The captions as worked out by hand: y=a p=a with softmax(2, 0, 1)[0]; y=c p=b with softmax(0, 3, 0)[1].
    first = float(torch.tensor([2.0, 0.0, 1.0]).softmax(0)[0])
    second = float(torch.tensor([0.0, 3.0, 0.0]).softmax(0)[1])
    assert texts(40) == [f"y=a p=a {first:.2f}", f"y=c p=b {second:.2f}"]


@pytest.mark.cuda
def test_a_cuda_hand_over_lands_in_pinned_memory_and_marks_its_end():
    result = _result()
    device = torch.device("cuda")
    classes, outputs = torch.tensor([0, 1], device=device), result.outputs.to(device)
    on_device = CAMResult({}, outputs, classes, result.scores.to(device), (4, 4))
    maps = {KEY: torch.rand(2, 4, 4, device=device)}
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # the hand-over must not wait for the device
    try:
        drawing = hand_over(on_device, maps, FixedBatch(torch.rand(2, 3, 4, 4)))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert drawing.ready is not None
    drawing.wait()
    assert drawing.maps[KEY].is_pinned() and drawing.maps[KEY].device.type == "cpu"
    assert torch.equal(drawing.maps[KEY], maps[KEY].cpu())
    assert torch.equal(drawing.result.outputs, result.outputs)
