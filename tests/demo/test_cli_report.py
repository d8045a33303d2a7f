"""After a command-line fit: the run folder, its summary images and the TensorBoard command, on rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

from cam_callback.demo.cli import main
from cam_callback.demo.cli_report import CARD_HINT, RunReport, run_report, tensorboard_command

from .cli_helpers import DEMO, TINY


def test_a_fit_says_where_it_went(tmp_path, capsys):
    cli = main(["fit", "--config", DEMO, f"--trainer.logger.init_args.save_dir={tmp_path}"] + TINY)
    out = capsys.readouterr().out.splitlines()
    logger = cli.trainer.logger
    assert logger is not None and logger.log_dir is not None
    folder = Path(logger.log_dir)
    assert f"run folder: {folder}" in out
    summaries = sorted(str(p) for p in folder.glob("cam_summary_*.png"))
    assert len(summaries) == 4  # 2 layers x 2 methods
    assert [line[len("summary: "):] for line in out if line.startswith("summary: ")] == summaries
    assert f"view it: {tensorboard_command(folder.parent)}" in out
    assert tensorboard_command(folder.parent) == (
        f"{sys.executable} -m tensorboard.main --logdir {folder.parent} --samples_per_plugin images=1000"
    )
    assert CARD_HINT in out


def test_the_report_is_rank_zeros_alone():
    assert run_report(types.SimpleNamespace(is_global_zero=False, loggers=[])) is None


class Logger:
    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir


class TensorBoardLogger(Logger):
    """Named as Lightning's: the report reads the class name, not the class."""


class CSVLogger(Logger):
    pass


class MyTensorBoardLogger(TensorBoardLogger):
    pass


def _trainer(root: Path, *loggers: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(is_global_zero=True, loggers=list(loggers), default_root_dir=str(root))


def test_the_report_names_the_folder_its_summaries_and_the_command(tmp_path):
    folder = tmp_path / "logs" / "run" / "version_3"
    folder.mkdir(parents=True)
    for name in ("cam_summary_b_gradcam.png", "cam_summary_a_gradcam.png", "other.png"):
        (folder / name).write_bytes(b"")
    report = run_report(_trainer(tmp_path, TensorBoardLogger(None), MyTensorBoardLogger(str(folder))))
    assert report == "\n".join([
        f"run folder: {folder}",
        f"summary: {folder / 'cam_summary_a_gradcam.png'}",
        f"summary: {folder / 'cam_summary_b_gradcam.png'}",
        f"view it: {sys.executable} -m tensorboard.main --logdir {folder.parent} "
        "--samples_per_plugin images=1000",
        CARD_HINT,
    ])


def test_without_tensorboard_there_is_no_command_and_the_folder_is_quoted(tmp_path):
    folder = tmp_path / "a b"
    folder.mkdir()
    report = run_report(_trainer(tmp_path, CSVLogger(str(folder))))
    assert report == f"run folder: {folder}"
    with_tensorboard = run_report(_trainer(tmp_path, TensorBoardLogger(str(folder / "version_0"))))
    assert with_tensorboard is not None
    assert with_tensorboard.splitlines()[-2] == (
        f"view it: {sys.executable} -m tensorboard.main --logdir '{folder}' --samples_per_plugin images=1000"
    )


def test_without_a_logger_folder_the_newest_own_run_folder_is_named(tmp_path):
    assert run_report(_trainer(tmp_path)) is None  # nothing written anywhere
    older, newer = tmp_path / "cam_logs" / "version_1", tmp_path / "cam_logs" / "version_0"
    for index, folder in enumerate((older, newer)):
        folder.mkdir(parents=True)
        os.utime(folder, (1_000_000 + index, 1_000_000 + index))
    assert run_report(_trainer(tmp_path, CSVLogger(None))) == f"run folder: {newer}"


def test_the_mixin_writes_the_report_after_a_fit(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    shell = RunReport()
    shell.trainer = _trainer(tmp_path, CSVLogger(str(folder)))  # type: ignore[attr-defined]
    shell.after_fit()
    assert capsys.readouterr().out == f"run folder: {folder}\n"
    shell.trainer = types.SimpleNamespace(is_global_zero=False, loggers=[])  # type: ignore[attr-defined]
    shell.after_fit()
    assert capsys.readouterr().out == ""


def test_the_printed_command_runs_as_pasted(tmp_path):
    """The command starts this environment's TensorBoard from any folder, without an activated venv."""
    command = tensorboard_command(tmp_path) + " --version_tb"
    result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()[:1].isdigit()  # TensorBoard's version, e.g. 2.21.0
