"""The callback's background writer on a real tiny Trainer: everything written by the end, in order."""

from __future__ import annotations

import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
from events import read_events
from full_disk import FullDisk
from lit_models import loaders, make_module_class
from pytorch_lightning.loggers import TensorBoardLogger

from cam_callback import GradCAMCallback
from cam_callback.sinks import TensorBoardSink

TinyNet = make_module_class(pl)
QUIET: dict[str, Any] = dict(
    enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, enable_checkpointing=False
)




def _trainer(tmp_path: Path, callback: GradCAMCallback, max_epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[callback],
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        deterministic=True,
        **QUIET,
    )


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cam_callback-writer"]


@pytest.fixture
def slow_images(monkeypatch):
    """Make the TensorBoard sink slow, so records are still queued when the run ends."""
    original = TensorBoardSink.add_image

    def slow(self, *args, **kwargs):
        time.sleep(0.15)
        original(self, *args, **kwargs)

    monkeypatch.setattr(TensorBoardSink, "add_image", slow)


def test_every_image_and_number_of_every_validation_is_in_the_event_files_in_order(tmp_path, slow_images):
    pl.seed_everything(7, verbose=False)
    callback = GradCAMCallback(layer="features.3", method=["gradcam", "layercam"], num_samples=4)
    trainer = _trainer(tmp_path, callback, max_epochs=3)
    train, val = loaders()
    trainer.fit(TinyNet(), train, val)
    assert not _writer_threads()  # drained and stopped by the end of fit

    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    # 6 training batches and a validation per epoch: Lightning logs val_loss at steps 5, 11 and 17.
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert val_steps == [5, 11, 17]
    steps = [0, *val_steps]  # the step-0 frame when training starts, then each validation's own step
    for method in ("gradcam", "layercam"):
        for kind in ("cam", "cam_heatmap"):
            assert [e.step for e in events.Images(f"{kind}/features.3/{method}")] == steps
        assert [e.step for e in events.Images(f"cam_summary/features.3/{method}")] == [18]
        # The drift numbers are Lightning metrics of the validations: none at step 0.
        for name in ("change_prev", "change_first", "shift_prev", "shift_first"):
            assert [e.step for e in events.Scalars(f"cam_drift/features.3/{method}/{name}")] == val_steps
    # The numbers are the history's: drift against the first validation, recomputed from the kept maps.
    # Per sample 1 - cos, with two blank maps at distance 0 and a blank against a non-blank one at 1.
    for method in ("gradcam", "layercam"):
        frames = callback.history.frames()[("features.3", method)].flatten(2).double()
        distances = []
        for last, first in zip(frames[-1], frames[0], strict=True):
            norms = float(last.norm()) * float(first.norm())
            blank = (float(last.norm()) == 0) + (float(first.norm()) == 0)
            distances.append(1 - float(last @ first) / norms if norms else [0.0, 1.0, 0.0][blank])
        logged = [e.value for e in events.Scalars(f"cam_drift/features.3/{method}/change_first")]
        assert logged[-1] == pytest.approx(sum(distances) / len(distances), abs=1e-5)
    assert len(list(Path(trainer.logger.log_dir).glob("*tfevents*.cam_callback"))) == 1


class FailsAtEpoch(TinyNet):  # type: ignore[misc, valid-type]
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def training_step(self, batch, index):
        if self.current_epoch == 1 and index == 2:
            raise self.error
        return super().training_step(batch, index)


def test_an_exception_in_fit_still_writes_what_was_queued(tmp_path, slow_images):
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    trainer = _trainer(tmp_path, callback, max_epochs=3)
    with pytest.raises(ValueError, match="user code failed"):
        trainer.fit(FailsAtEpoch(ValueError("user code failed")), *loaders())
    assert not _writer_threads()
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    # The step-0 frame and the first epoch's validation (at val_loss's step); the fit fails in the second.
    assert [e.step for e in events.Scalars("val_loss")] == [5]
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, 5]
    assert [e.step for e in events.Images("cam_heatmap/features.3/gradcam")] == [0, 5]


def test_a_keyboard_interrupt_in_fit_still_writes_what_was_queued(tmp_path, slow_images):
    handler = signal.getsignal(signal.SIGINT)
    callback = GradCAMCallback(layer="features.3", num_samples=4)
    trainer = _trainer(tmp_path, callback, max_epochs=3)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown exits after on_exception
            trainer.fit(FailsAtEpoch(KeyboardInterrupt()), *loaders())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl+C while shutting down
    assert not _writer_threads()
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    assert [e.step for e in events.Scalars("val_loss")] == [5]
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, 5]


@pytest.fixture
def fails_at_step_zero(monkeypatch):
    """Every image of the step-0 frame fails to be written (a moment of full disk); later ones are fine."""
    original = TensorBoardSink.add_image

    def flaky(self, tag, image, step, image_format="png"):
        if step == 0:
            raise OSError("disk full")
        original(self, tag, image, step, image_format)

    monkeypatch.setattr(TensorBoardSink, "add_image", flaky)


def _fit_telling(tmp_path: Path, max_epochs: int, words: str) -> tuple[pl.Trainer, list[str]]:
    """Fit with a callback at ``features.3``; return the trainer and the warnings that hold ``words``."""
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    trainer = _trainer(tmp_path, callback, max_epochs=max_epochs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyNet(), *loaders())
    return trainer, [str(w.message) for w in caught if words in str(w.message)]


def test_a_writer_failure_warns_at_the_next_validation_once_per_lost_image(tmp_path, fails_at_step_zero):
    trainer, lost = _fit_telling(tmp_path, 2, "skipped writing some maps")
    # The step-0 frame's overlay and heatmap, each said once (at the first validation), never again.
    message = "GradCAMCallback skipped writing some maps of an earlier validation: OSError: disk full"
    assert lost == [message] * 2
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [5, 11]


def test_a_writer_failure_is_raised_at_the_next_validation_under_strict(tmp_path, fails_at_step_zero):
    callback = GradCAMCallback(layer="features.3", num_samples=2, strict=True)
    trainer = _trainer(tmp_path, callback, max_epochs=2)
    with pytest.raises(OSError, match="disk full"):
        trainer.fit(TinyNet(), *loaders())
    assert trainer.current_epoch == 0 and not _writer_threads()


def test_a_failure_while_writing_during_fit_warns_and_training_goes_on(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardSink, "add_image", broken)
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    trainer = _trainer(tmp_path, callback, max_epochs=2)
    with pytest.warns(RuntimeWarning, match="OSError: disk full"):
        trainer.fit(TinyNet(), *loaders())
    assert trainer.current_epoch == 2
    assert isinstance(trainer.logger, TensorBoardLogger)
    # The numbers of the same validations still reached the logger through Lightning, at val_loss's steps.
    events = read_events(trainer.logger.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert val_steps == [5, 11]
    assert [e.step for e in events.Scalars("cam_drift/features.3/gradcam/change_prev")] == val_steps


def test_a_moment_of_full_disk_warns_once_and_every_later_image_is_read(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    disk.failures_left = 2  # the step-0 frame's write and the first validation's fail, halfway
    trainer, said = _fit_telling(tmp_path, 3, "could not write")
    assert len(said) == 1
    assert "No space left on device" in said[0]
    assert "lost: step 0 (cam/features.3/gradcam, cam_heatmap/features.3/gradcam)" in said[0]
    assert disk.failures == 2
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = read_events(trainer.logger.log_dir)
    # The first validation's images were kept and written with the second's; nothing after is lost.
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [5, 11, 17]
    assert [e.step for e in events.Images("cam_heatmap/features.3/gradcam")] == [5, 11, 17]
    assert len(events.Images("cam_summary/features.3/gradcam")) == 1
