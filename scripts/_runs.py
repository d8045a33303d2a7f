"""Shared by the scripts here: run a YAML experiment through the command line, read its event file back."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@contextmanager
def _bare_argv():
    """Hide this script's own options from LightningCLI, which warns when it sees both them and `args`."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


class EpochProgress(pl.Callback):
    """One line per finished epoch (the progress bar is off): the epoch, its validation accuracy, the time."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        accuracy = trainer.callback_metrics.get("val/acc")
        shown = f", val/acc {float(accuracy):.3f}" if accuracy is not None else ""
        elapsed = time.perf_counter() - self.start
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        print(f"{self.name}: {epoch}{shown}, {elapsed:.0f} s", flush=True)


def fit(config: str, save_dir: str | Path, *overrides: str) -> Path:
    """Run ``python -m cam_callback fit --config configs/<config>`` logging under ``save_dir``.

    Says each finished epoch on one line (:class:`EpochProgress`). Returns the run's folder
    (``<save_dir>/<name>/version_N``).
    """
    from cam_callback.demo.cli import main

    progress = {"class_path": f"{__name__}.EpochProgress", "init_args": {"name": config}}
    args = [
        "fit", "--config", str(CONFIGS / config),
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.callbacks+={json.dumps(progress)}",
        *overrides,
    ]
    print(f"training {config} ...", flush=True)
    start = time.perf_counter()
    with _bare_argv():
        cli = main(args)
    run = Path(cli.trainer.logger.log_dir)
    print(f"trained {config} in {time.perf_counter() - start:.0f} s -> {run}", flush=True)
    return run


def run_config(run: str | Path) -> dict:
    """The full configuration LightningCLI saved next to the run (``config.yaml``)."""
    with open(Path(run) / "config.yaml") as handle:
        return yaml.safe_load(handle)


def events(run: str | Path) -> EventAccumulator:
    """Every scalar and image of the run's TensorBoard event file(s)."""
    accumulator = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def per_validation(accumulator: EventAccumulator, tag: str) -> list[float]:
    """The values of a scalar logged once per validation (or per epoch), oldest first ([] if absent).

    What the callback logs at step 0, when training starts (before any validation), is left out.
    """
    if tag not in accumulator.Tags()["scalars"]:
        return []
    events = sorted(accumulator.Scalars(tag), key=lambda e: (e.step, e.wall_time))
    return [event.value for event in events if event.step > 0]
