"""A real TensorBoard server serves the callback's event files, and a real browser shows them.

One tiny run of the demo's classes (two methods, one of them ``gradcam++``), served by ``tensorboard`` on
127.0.0.1 with its default fast loader: its HTTP API gives every image at every step, each the image the
callback made, and its Custom Scalars routes group the numbers; headless Chromium renders the Images
dashboard with a loaded card per tag. Set ``CAM_CALLBACK_SCREENSHOT=docs/tensorboard_images.png`` to keep
the browser's screenshot (the README's).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from pytorch_lightning.loggers import TensorBoardLogger
from served import Chromium, chromium_path, get, get_json, group_alive, tensorboard_server, wait_for

import cam_callback.callback.loggers as loggers
from cam_callback import GradCAMCallback
from cam_callback.callback.publishing import name_part
from cam_callback.demo import ImageClassifier, ShapesDataModule
from cam_callback.sinks import ImageRecord

LAYER = "model.features.-1"
SHOWN = "model.features.7"  # the tags' name of TinyCNN's last layer
METHODS = ("gradcam", "gradcam++")
NAMES = tuple(name_part(m) for m in METHODS)  # how the tags spell them: gradcam, gradcampp
SCREENSHOT = "CAM_CALLBACK_SCREENSHOT"


@dataclass
class ServedRun:
    base: str  # the server's URL
    run: str  # the run's name on the server
    made: dict[tuple[str, int], torch.Tensor]  # the images the callback handed to its sinks, by (tag, step)
    scalars: list[str]  # the run's logged numbers' tags


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedRun]:
    root = tmp_path_factory.mktemp("served")
    made: dict[tuple[str, int], torch.Tensor] = {}
    publish = loggers.publish_images

    def keep(sinks: Sequence[Any], records: list[ImageRecord]) -> list[Exception]:
        for record in records:
            made[(record.tag, record.step)] = record.image.clone()
        return publish(sinks, records)

    callback = GradCAMCallback(
        LAYER, list(METHODS), num_samples=4, image_format="png", mean=[0.5] * 3, std=[0.29] * 3
    )
    logger = TensorBoardLogger(str(root / "logs"), name="tiny")
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[callback], logger=logger,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(root), log_every_n_steps=1, deterministic=True,
    )
    data = ShapesDataModule(num_train=16, num_val=4, image_size=48, batch_size=8, num_workers=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loggers, "publish_images", keep)
        pl.seed_everything(0)
        trainer.fit(ImageClassifier(arch="tinycnn", num_classes=4), datamodule=data)
    scalars = sorted(t for t in read_events(logger.log_dir).Tags()["scalars"] if t.startswith("cam_"))
    with tensorboard_server(root / "logs", root / "tensorboard") as server:
        yield ServedRun(server.url, "tiny/version_0", made, scalars)


def _served_steps(served: ServedRun, tag: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = get_json(
        served.base, "/data/plugin/images/images", run=served.run, tag=tag, sample=0
    )
    return entries


def test_the_server_gives_every_cam_image_at_every_step_as_it_was_made(served: ServedRun):
    expected_tags = sorted({tag for tag, _ in served.made})
    # overlays, heatmaps, the live timeline and the end-of-fit summary of each method; nothing else was made
    kinds = ("cam", "cam_heatmap", "cam_timeline", "cam_summary")
    assert expected_tags == sorted(f"{kind}/{SHOWN}/{m}" for kind in kinds for m in NAMES)

    def loaded() -> dict[str, Any] | None:  # the fast loader reads the files in the background
        tags = get_json(served.base, "/data/plugin/images/tags").get(served.run, {})
        if sorted(tags) != expected_tags:
            return None
        counts = {tag: len(_served_steps(served, tag)) for tag in expected_tags}
        want = {tag: sum(1 for t, _ in served.made if t == tag) for tag in expected_tags}
        return tags if counts == want else None

    wait_for("the run's images on the server", loaded)
    checked = 0
    for tag in expected_tags:
        entries = _served_steps(served, tag)
        assert [e["step"] for e in entries] == sorted(step for t, step in served.made if t == tag)
        for entry in entries:
            body = get(served.base, "/data/plugin/images/individualImage?" + entry["query"])
            decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None, (tag, entry["step"])
            rgb = torch.from_numpy(decoded[:, :, ::-1].copy()).permute(2, 0, 1)
            assert torch.equal(rgb, served.made[(tag, entry["step"])]), (tag, entry["step"])  # PNG: exact
            checked += 1
    # 2 methods x (overlay, heatmap and timeline at step 0 and after each of 2 epochs, plus one summary)
    assert checked == len(METHODS) * (3 * 3 + 1)


def test_the_server_groups_the_numbers_by_the_layout(served: ServedRun):
    # change_*, shift_*, and two more: the shapes have masks; focus: concentration, border_share and
    # consistency (NaN when no two of the explained samples share a class)
    focus_names = 3
    assert len(served.scalars) == len(METHODS) * (6 + focus_names)
    layout = wait_for(
        "the layout", lambda: get_json(served.base, "/data/plugin/custom_scalars/layout") or None
    )
    assert [c["title"] for c in layout["category"]] == [f"cam/{SHOWN}/{m}" for m in NAMES]
    for category, method in zip(layout["category"], NAMES, strict=True):
        drift, focus = category["chart"]  # a chart per family, in the order the numbers came
        assert [drift["title"], focus["title"]] == ["drift", "focus"]
        (regex,) = drift["multiline"]["tag"]
        answer = get_json(served.base, "/data/plugin/custom_scalars/scalars", run=served.run, tag=regex)
        assert answer["regex_valid"] is True
        own = [t for t in served.scalars if t.startswith(f"cam_drift/{SHOWN}/{method}/")]
        assert sorted(answer["tag_to_events"]) == own and len(own) == 6
        for tag in own:  # the mask numbers from the step-0 frame on, the changes after each of the two epochs
            frames = 3 if tag.endswith(("/energy_in_mask", "/pointing_game")) else 2
            assert len(answer["tag_to_events"][tag]) == frames
        (regex,) = focus["multiline"]["tag"]
        answer = get_json(served.base, "/data/plugin/custom_scalars/scalars", run=served.run, tag=regex)
        own = [t for t in served.scalars if t.startswith(f"cam_focus/{SHOWN}/{method}/")]
        assert sorted(answer["tag_to_events"]) == own and len(own) == focus_names
        for tag in own:  # from the step-0 frame on
            assert len(answer["tag_to_events"][tag]) == 3


# The Images dashboard's web components, looked up through their shadow roots: the categories (name, open)
# and each card's title (its heading's text) and whether its <img> finished loading (and at which size).
_WALK = r"""
  const all = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      all.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  const categories = all.filter(
    (e) => e.tagName === 'TF-CATEGORY-PAGINATED-VIEW' && e.category && e.category.name);
"""
_CARDS = "(() => {" + _WALK + r"""
  const cards = all.filter((e) => e.tagName === 'TF-IMAGE-LOADER').map((card) => {
    const root = card.shadowRoot || card;
    const heading = root.querySelector('tf-card-heading');
    const img = root.querySelector('img');
    return {
      title: heading ? (heading.shadowRoot ? heading.shadowRoot.textContent : '') + heading.textContent : '',
      loaded: !!img && img.complete && img.naturalWidth > 0,
      width: img ? img.naturalWidth : 0,
      height: img ? img.naturalHeight : 0,
    };
  });
  return {categories: categories.map((c) => [c.category.name, c.opened]), cards};
})()"""
# What a user does to see a closed category (TensorBoard opens the first two): open it.
_OPEN_ALL = "(() => {" + _WALK + "categories.forEach((c) => { c.opened = true; }); return 0; })()"
# Where the overlays' category starts on the page, for the screenshot.
_OVERLAYS_TOP = "(() => {" + _WALK + """
  const overlays = categories.find((c) => c.category.name === 'cam');
  return overlays ? overlays.getBoundingClientRect().top : 0;
})()"""


@pytest.mark.skipif(
    chromium_path() is None, reason="no `chromium` on PATH (Debian: apt-get install chromium; .ci/run does)"
)
def test_chromium_shows_a_loaded_card_per_cam_tag(served: ServedRun, tmp_path: Path):
    tags = sorted({tag for tag, _ in served.made})
    last = {tag: max(step for t, step in served.made if t == tag) for tag in tags}
    wait_for("the run's images on the server", lambda: (
        sorted(get_json(served.base, "/data/plugin/images/tags").get(served.run, {})) == tags) or None)
    with Chromium(tmp_path / "chromium") as browser:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=served.base + "#images")

        kinds = sorted({tag.split("/")[0] for tag in tags})  # cam, cam_heatmap, cam_summary, cam_timeline

        def categories() -> list[list[Any]] | None:
            found = browser.evaluate(_CARDS)["categories"]
            categories.seen = found  # type: ignore[attr-defined]
            return found if sorted(name for name, _ in found) == kinds else None

        # TensorBoard orders them by its own natural sort, in which "/" and "_" are alike (so by the layer's
        # name against "heatmap" and "summary"); the README says so.
        wait_for("the Images dashboard's categories", categories)
        browser.evaluate(_OPEN_ALL)

        def rendered() -> list[dict[str, Any]] | None:
            cards: list[dict[str, Any]] = browser.evaluate(_CARDS)["cards"]
            rendered.seen = [(c["loaded"], c["width"]) for c in cards]  # type: ignore[attr-defined]
            return cards if len(cards) == len(tags) and all(c["loaded"] for c in cards) else None

        cards = wait_for("a loaded card per tag", rendered)
        titles = [next((t for t in tags if re.search(rf"(^|\s){re.escape(t)}(\s|$)", c["title"])), "")
                  for c in cards]
        assert sorted(titles) == tags  # one card per tag, each titled by it
        for card, tag in zip(cards, titles, strict=True):
            image = served.made[(tag, last[tag])]  # the card shows the latest step
            assert (card["width"], card["height"]) == (image.shape[2], image.shape[1]), tag
        top = max(0, int(browser.evaluate(_OVERLAYS_TOP)) - 8)  # the overlays' cards, whatever their place
        shot = browser.send(
            "Page.captureScreenshot", format="png", clip=dict(x=300, y=top, width=790, height=520, scale=0.8)
        )
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    keep = os.environ.get(SCREENSHOT)
    if keep:
        Path(keep).write_bytes(png)


def test_the_server_and_the_browser_stop_when_the_test_fails_inside(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    with pytest.raises(RuntimeError, match="a failing check"):
        with tensorboard_server(tmp_path / "logs", tmp_path / "tensorboard") as server:
            assert get_json(server.url, "/data/plugin/images/tags") == {}
            raise RuntimeError("a failing check")
    assert server.process.returncode is not None and not group_alive(server.process)
    if chromium_path() is None:
        return  # the server's half still ran
    with pytest.raises(RuntimeError, match="a failing check"):
        with Chromium(tmp_path / "chromium") as browser:
            assert browser.evaluate("1 + 1") == 2
            raise RuntimeError("a failing check")
    assert browser.process.returncode is not None and not group_alive(browser.process)
