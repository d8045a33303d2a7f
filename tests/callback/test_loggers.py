"""Images and drift numbers reach every kind of logger, where that logger keeps them, and nowhere else."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import pytorch_lightning as pl
import torch
from events import read_events
from lit_models import loaders, make_module_class
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from cam_callback import GradCAMCallback

TinyNet = make_module_class(pl)
ENERGY = "cam_drift/features.3/gradcam/energy_in_mask"
CHANGE = "cam_drift/features.3/gradcam/change_prev"
QUIET: dict[str, Any] = dict(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)


def _fit(tmp_path, logger, **kwargs):
    """Two epochs of 6 steps (validation at steps 5 and 11, Lightning's logging steps), from a fresh cwd.

    The callback also draws the untrained model's maps when training starts: images at step 0, whose numbers
    go to every logger's ``log_metrics`` at step 0 (no validation's Lightning metrics to join).
    """
    pl.seed_everything(7, verbose=False)
    callback = GradCAMCallback(layer="features.3", num_samples=2)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[callback], logger=logger, default_root_dir=str(tmp_path / "root"),
        enable_checkpointing=False, **QUIET, **kwargs,
    )
    trainer.fit(TinyNet(), *loaders(dict_batches=True))
    return trainer


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory that must stay empty."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder
    assert not list(folder.iterdir()), "something was written into the working directory"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _tensorboard(log_dir):
    events = read_events(str(log_dir))
    return events


def test_csv_logger_gets_numbers_in_metrics_csv_and_images_as_png_under_its_log_dir(tmp_path, cwd):
    logger = CSVLogger(str(tmp_path / "logs"), name="csv")
    with pytest.warns(UserWarning, match="CSVLogger takes no images"):
        trainer = _fit(tmp_path, logger)
    log_dir = Path(logger.log_dir)
    with open(log_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    energy = [(int(r["step"]), float(r[ENERGY])) for r in rows if r.get(ENERGY)]
    val_steps = [int(r["step"]) for r in rows if r.get("val_loss")]
    assert val_steps == [5, 11]
    assert [s for s, _ in energy] == [0, *val_steps]  # the step-0 frame's, then each validation's
    assert energy[-1][1] == pytest.approx(float(trainer.callback_metrics[ENERGY]), abs=1e-6)
    assert {"cam/features.3/gradcam/step_00000005.png", "cam/features.3/gradcam/step_00000011.png",
            "cam_summary_features.3_gradcam.png"} <= _files(log_dir)
    assert not (log_dir / "scalars.csv").exists()  # the numbers are in metrics.csv, once
    assert not (tmp_path / "root").exists()


def test_without_a_logger_everything_goes_to_a_fresh_run_folder_of_default_root_dir(tmp_path, cwd):
    (tmp_path / "root" / "cam_logs" / "version_0").mkdir(parents=True)  # an earlier run
    with pytest.warns(UserWarning, match="no logger: writing the images as PNG files under"):
        trainer = _fit(tmp_path, False)
    run = tmp_path / "root" / "cam_logs" / "version_1"
    files = _files(run)
    assert {f"cam/features.3/gradcam/step_{s:08d}.png" for s in (0, 5, 11)} <= files
    assert "cam_summary_features.3_gradcam.png" in files
    with open(run / "scalars.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["tag"] == ENERGY]
    # the callback's own sink keeps the numbers: the step-0 frame's too, then each validation's
    assert [int(r["step"]) for r in rows] == [0, 5, 11]
    assert trainer.logger is None and not (tmp_path / "root" / "lightning_logs").exists()
    assert float(rows[-1]["value"]) == pytest.approx(float(trainer.callback_metrics[ENERGY]), abs=1e-6)


def test_two_loggers_each_get_images_and_numbers(tmp_path, cwd):
    board = TensorBoardLogger(str(tmp_path / "logs"), name="tb")
    table = CSVLogger(str(tmp_path / "logs"), name="csv")
    with pytest.warns(UserWarning, match="CSVLogger takes no images"):
        _fit(tmp_path, [board, table])
    events = _tensorboard(board.log_dir)
    val_steps = [e.step for e in events.Scalars("val_loss")]
    assert val_steps == [5, 11]
    # the step-0 frame's images too; its numbers are no Lightning metrics
    assert [e.step for e in events.Images("cam/features.3/gradcam")] == [0, *val_steps]
    assert [e.step for e in events.Scalars(ENERGY)] == [0, *val_steps]  # the step-0 frame's, then Lightning's
    table_files = _files(Path(table.log_dir))
    assert {f"cam/features.3/gradcam/step_{s:08d}.png" for s in (0, 11)} <= table_files
    with open(Path(table.log_dir) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    energy_steps = [int(r["step"]) for r in rows if r.get(ENERGY)]
    assert energy_steps == [0] + [int(r["step"]) for r in rows if r.get("val_loss")] == [0, 5, 11]
    assert "cam_summary_features.3_gradcam.png" in _files(Path(board.log_dir))


class RecordingLogger(Logger):
    """A logger of the user's own: it keeps what Lightning hands it, and has a run folder."""

    def __init__(self, root):
        super().__init__()
        self.root = root
        self.metrics = []

    @property
    def name(self):
        return "mine"

    @property
    def version(self):
        return 0

    @property
    def log_dir(self):
        return str(self.root)

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))


def test_any_other_logger_gets_numbers_through_log_metrics_and_png_files_in_its_folder(tmp_path, cwd):
    logger = RecordingLogger(tmp_path / "mine")
    with pytest.warns(UserWarning, match=r"RecordingLogger takes no images: .* under .*mine"):
        _fit(tmp_path, logger)
    energy = [(step, m[ENERGY]) for step, m in logger.metrics if ENERGY in m]
    assert [s for s, m in logger.metrics if "val_loss" in m] == [5, 11]
    assert [s for s, _ in energy] == [0, 5, 11]  # the step-0 frame's numbers, then each validation's
    # change_prev from the first validation on: the step-0 frame is the one before it
    assert [s for s, m in logger.metrics if CHANGE in m] == [5, 11]
    (start,) = [m for step, m in logger.metrics if step == 0]
    assert set(start) == {ENERGY, ENERGY.replace("energy_in_mask", "pointing_game")}
    assert {f"cam/features.3/gradcam/step_{s:08d}.png" for s in (0, 5)} <= _files(tmp_path / "mine")


def _finished_history(run_dir: Path, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The run's history rows once W&B has written its exit record (the last one) into the run file.

    Offline, ``wandb.finish()`` may return while W&B's service still writes the file: read right away, it
    can hold only its header, or not yet the history.
    """
    from wandb.proto import wandb_internal_pb2
    from wandb_offline import _payloads, history

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(run_dir.glob("run-*.wandb"))
        if files:
            data = files[0].read_bytes()
            kinds = set()
            for payload in _payloads(data) if data[:4] == b":W&B" else []:
                record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
                record.ParseFromString(payload)
                kinds.add(record.WhichOneof("record_type"))
            if "exit" in kinds:
                break
        time.sleep(0.1)
    return history(run_dir)


def test_wandb_offline_gets_images_with_captions_and_numbers(tmp_path, cwd, monkeypatch):
    pytest.importorskip("wandb")
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # W&B 0.16 takes a save_dir that does not exist yet for unwritable: it runs in the system's temporary
    # folder instead and says so in ./wandb/debug-internal.log, in the working directory.
    (tmp_path / "wb").mkdir()
    logger = WandbLogger(project="cam", save_dir=str(tmp_path / "wb"), offline=True)
    try:
        trainer = _fit(tmp_path, logger)
        run_dir = Path(logger.experiment.dir).parent
    finally:
        wandb.finish()
    rows = _finished_history(run_dir)
    images = [r for r in rows if "cam/features.3/gradcam/filenames" in r]
    val_steps = [r["trainer/global_step"] for r in rows if "val_loss" in r]
    assert val_steps == [5, 11]
    assert [r["trainer/global_step"] for r in images] == [0, *val_steps]  # the step-0 frame, then validations
    assert [r["cam/features.3/gradcam/captions"] for r in images] == [["step 0"], ["step 5"], ["step 11"]]
    # two 16-pixel tiles shown at 128 px (8 x) side by side, 2 pixels of padding: 2 * 130 + 2 by 128 + 4
    overlay = "cam/features.3/gradcam"
    assert (images[0][f"{overlay}/width"], images[0][f"{overlay}/height"]) == (262, 132)
    media = _files(run_dir / "files" / "media" / "images")
    assert len([m for m in media if m.startswith("cam/features.3/gradcam_")]) == 3
    numbers = [(r["trainer/global_step"], r[ENERGY]) for r in rows if ENERGY in r]
    assert [s for s, _ in numbers] == [0, *val_steps]
    assert numbers[-1][1] == pytest.approx(float(trainer.callback_metrics[ENERGY]), abs=1e-6)
    summary = [r for r in rows if "cam_summary/features.3/gradcam/filenames" in r]
    assert len(summary) == 1
    assert not (tmp_path / "root").exists()
    assert {p.name for p in (tmp_path / "wb").iterdir()} == {"wandb"}  # nothing beside W&B's own folder


def _mlflow_images(names: list[str], tag: str) -> list[tuple[int, str]]:
    """(step, artifact path) of each full-size PNG MLflow made for ``tag``, from MLflow's own file names:
    ``images/<tag, / as ~>+step+<step>+timestamp+...png`` (MLflow 2.12: ``/`` as ``#``, ``%`` between fields).
    """
    found = []
    for slash, split in (("~", "+"), ("#", "%")):
        prefix = f"images/{tag.replace('/', slash)}{split}step{split}"
        pngs = [n for n in names if n.startswith(prefix) and n.endswith(".png")]
        found += [(int(n[len(prefix) :].split(split)[0]), n) for n in pngs]
    return found


def test_mlflow_on_sqlite_gets_image_artifacts_and_run_metrics(tmp_path, cwd):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient
    from pytorch_lightning.loggers import MLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = str(tmp_path / "artifacts")
    logger = MLFlowLogger(experiment_name="cam", tracking_uri=uri, artifact_location=artifacts)
    # MLflow 2.12 makes its default artifact root, an empty ./mlruns, whenever it opens a SQL store (as the
    # logger's client just did); 3.18 does not. That folder is MLflow's, made before the run: it stays empty.
    made_by_mlflow = sorted(p.name for p in cwd.iterdir())
    assert made_by_mlflow in ([], ["mlruns"])
    trainer = _fit(tmp_path, logger)
    assert logger.run_id is not None
    client = MlflowClient(tracking_uri=uri)
    energy = client.get_metric_history(logger.run_id, ENERGY)
    val_steps = [m.step for m in client.get_metric_history(logger.run_id, "val_loss")]
    assert val_steps == [5, 11]
    assert [m.step for m in energy] == [0, *val_steps]
    assert energy[-1].value == pytest.approx(float(trainer.callback_metrics[ENERGY]), abs=1e-6)
    names = [a.path for a in client.list_artifacts(logger.run_id, "images")]
    overlays = _mlflow_images(names, "cam/features.3/gradcam")
    assert sorted(step for step, _ in overlays) == [0, *val_steps]  # the step-0 frame too
    assert len(_mlflow_images(names, "cam_summary/features.3/gradcam")) == 1
    last = next(name for step, name in overlays if step == val_steps[-1])
    # Read from the run's (local) artifact store: MLflow 2.12 cannot download its own %-named images.
    run_artifacts = Path(urlparse(client.get_run(logger.run_id).info.artifact_uri).path)
    assert run_artifacts.is_relative_to(tmp_path / "artifacts")
    import cv2

    pixels = cv2.imread(str(run_artifacts / last))
    assert pixels is not None
    assert pixels.shape == (132, 262, 3)  # two 16-pixel tiles shown at 128 px side by side, 2 px padding
    assert {p.name for p in tmp_path.iterdir()} <= {"mlflow.db", "artifacts", "download", "cwd", "root"}
    assert not (tmp_path / "root").exists()
    for name in made_by_mlflow:
        (cwd / name).rmdir()  # only if still empty
    assert torch.is_tensor(trainer.callback_metrics[ENERGY])


def _picture() -> torch.Tensor:
    return torch.full((3, 2, 2), 7, dtype=torch.uint8)


def _stand_in(root: Path, loggers: list, **more: Any) -> Any:
    import types

    return types.SimpleNamespace(loggers=loggers, default_root_dir=str(root), **more)


def test_run_output_writes_images_summary_and_without_a_logger_the_numbers(tmp_path):
    from cam_callback.callback.loggers import RunOutput
    from cam_callback.callback.reporting import Reporter
    from cam_callback.callback.trainer import LightningNamespace
    from cam_callback.sinks import ImageRecord

    output = RunOutput(LightningNamespace.of(pl.loggers, pl.strategies), "cam", Reporter("T", strict=False))
    trainer = _stand_in(tmp_path, [])
    with pytest.warns(UserWarning, match="T: no logger: writing the images as PNG files under"):
        output.images(trainer, [ImageRecord("cam/l/gradcam", _picture(), 3)])
    output.numbers(trainer, {"cam_drift/l/gradcam/change_prev": 0.25}, 3)
    output.summary(trainer, [ImageRecord("cam_summary/l/gradcam", _picture(), 9)])
    output.close()
    folder = tmp_path / "cam_logs" / "version_0"
    assert _files(folder) == {
        "cam/l/gradcam/step_00000003.png",
        "cam_summary/l/gradcam/step_00000009.png",  # the run folder's sink takes the summary too
        "cam_summary_l_gradcam.png",  # and one file per tag, rewritten at each summary
        "scalars.csv",
    }
    assert (folder / "scalars.csv").read_text().splitlines() == [
        "tag,step,value", "cam_drift/l/gradcam/change_prev,3,0.25",
    ]


def test_run_output_writes_nothing_under_fast_dev_run_and_numbers_only_without_a_logger(tmp_path):
    from cam_callback.callback.loggers import RunOutput
    from cam_callback.callback.reporting import Reporter
    from cam_callback.callback.trainer import LightningNamespace
    from cam_callback.sinks import ImageRecord

    namespace = LightningNamespace.of(pl.loggers, pl.strategies)
    quick = RunOutput(namespace, "cam", Reporter("T", strict=False))
    with pytest.warns(UserWarning, match="fast_dev_run: the maps are computed and checked, but no file"):
        quick.images(_stand_in(tmp_path / "a", [], fast_dev_run=True), [ImageRecord("cam/x", _picture(), 1)])
    quick.close()
    assert not (tmp_path / "a").exists()
    logged = RunOutput(namespace, "cam", Reporter("T", strict=False))
    csv_logger = CSVLogger(str(tmp_path / "b"), name="run")
    with pytest.warns(UserWarning, match="CSVLogger takes no images"):
        logged.numbers(_stand_in(tmp_path / "b", [csv_logger]), {"x": 1.0}, 2)  # Lightning logs them
    logged.close()
    assert not (tmp_path / "b").exists()
