"""The Custom Scalars layout: a category per (layer, method), a chart per family, in the run's event file."""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytorch_lightning as pl
from events import read_events
from lit_models import DictData, make_module_class, tiny_data
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from torch.utils.data import DataLoader

from cam_callback import GradCAMCallback
from cam_callback.callback.layout import number_layout
from cam_callback.callback.publishing import Display, name_part

TinyNet: Any = make_module_class(pl)

# Pairs whose names are prefixes of each other's or hold regex characters; two prefixes, one with a slash.
PAIRS = [("layer4", "gradcam"), ("layer4.1", "gradcam"), ("layer4", "gradcam++"), ("features.-1", "x")]
FAMILIES = ["drift", "focus", "faith"]
STATS = ["change_prev", "shift_first"]


def _all_names(display: Display) -> dict[str, tuple[tuple[str, str], str]]:
    return {
        display.number(key, stat, family): (key, family)
        for key in PAIRS for family in FAMILIES for stat in STATS
    }


def test_each_chart_matches_exactly_the_numbers_of_its_pair_and_family():
    for prefix in ("cam", "attention/cam"):
        display = Display(tag_prefix=prefix)
        names = _all_names(display)
        unrelated = ["epoch", "val_loss", "other_drift/layer4/gradcam/change_prev"]
        unrelated.append(f"{prefix}/layer4/gradcam")
        groups = number_layout([*names, *unrelated], display)
        titles = [f"{prefix}/{layer}/{name_part(method)}" for layer, method in PAIRS]
        assert [g.title for g in groups] == titles
        for group, key in zip(groups, PAIRS, strict=True):
            assert [title for title, _ in group.charts] == FAMILIES  # in the order the names came
            for family, (regex,) in group.charts:
                matched = {n for n in [*names, *unrelated] if re.match(regex, n)}
                assert matched == {n for n, owner in names.items() if owner == (key, family)}


def test_names_of_another_prefix_or_shape_make_no_category():
    display = Display(tag_prefix="cam")
    assert number_layout(["cam_drift/l/m", "cam_drift//m/s", "cam_/l/m/s", "cams_drift/l/m/s"], display) == []
    parts = display.number_parts("cam_drift/a.b/gradcam/change_prev")
    assert parts == ("drift", ("a.b", "gradcam"), "change_prev")


def _layouts(folder) -> list[layout_pb2.Layout]:
    events = read_events(folder)
    found = []
    for point in events.Tensors(custom_scalars.CONFIG_SUMMARY_TAG):
        layout = layout_pb2.Layout()
        layout.ParseFromString(point.tensor_proto.string_val[0])
        found.append(layout)
    return found


@pytest.mark.parametrize("masks", [True, False], ids=["masks", "no-masks"])
def test_a_run_writes_one_layout_whose_regexes_match_its_logged_scalars(tmp_path, masks):
    # With masks: energy_in_mask and pointing_game from the first frame on, change_* and shift_* from the
    # second, so the layout is written at the first frame and covers them all. Without: no numbers at the
    # first frame, the layout comes with the second; the third brings nothing new and writes none.
    callback = GradCAMCallback(["features.0", "features.3"], ["gradcam", "gradcam++"], num_samples=2)
    logger = TensorBoardLogger(str(tmp_path))
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=2, callbacks=[callback], logger=logger,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    train = DataLoader(DictData(4, 1) if masks else tiny_data(4, 1), batch_size=2)
    val = DataLoader(DictData(2, 2) if masks else tiny_data(2, 2), batch_size=2)
    trainer.fit(TinyNet(), train, val)
    folder = logger.log_dir
    (layout,) = _layouts(folder)
    scalars = [t for t in read_events(folder).Tags()["scalars"] if t.startswith("cam_")]
    stats = ["change_prev", "change_first", "shift_prev", "shift_first"]
    stats += ["energy_in_mask", "pointing_game"] if masks else []
    assert len(scalars) == 4 * len(stats)  # four pairs
    pairs = [(layer, method) for layer in ("features.0", "features.3") for method in ("gradcam", "gradcam++")]
    titles = [f"cam/{layer}/{name_part(method)}" for layer, method in pairs]
    assert [c.title for c in layout.category] == titles
    for category, (layer, method) in zip(layout.category, pairs, strict=True):
        assert [chart.title for chart in category.chart] == ["drift"]
        (regex,) = category.chart[0].multiline.tag
        matched = sorted(t for t in scalars if re.match(regex, t))
        expected = sorted(f"cam_drift/{layer}/{name_part(method)}/{stat}" for stat in stats)
        assert matched == expected
