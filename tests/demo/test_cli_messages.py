"""The command line as a person meets it: short errors, nothing left behind when refused, where a run went."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from cam_callback.demo.cli import main
from cam_callback.demo.cli_errors import FULL_ERRORS, own_message
from cam_callback.demo.cli_report import run_report

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
TINY = [
    "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.callbacks.init_args.num_samples=2", "--data.init_args.num_train=16",
    "--data.init_args.num_val=8", "--data.init_args.image_size=32", "--data.init_args.batch_size=8",
]


@pytest.mark.parametrize(
    "option, expected",
    [
        ("method=gradcm", "error: `method`: unknown 'gradcm'; valid: gradcam, "),
        ("num_samples=0", "error: `num_samples` must be at least 1, got 0"),
        ("colormap=rainbowz", "error: `colormap`: unknown 'rainbowz'; valid (closest first): rainbow, "),
    ],
)
def test_a_wrong_value_prints_the_callbacks_own_message_first(tmp_path, option, expected, monkeypatch):
    monkeypatch.delenv(FULL_ERRORS, raising=False)
    args = ["fit", "--config", DEMO, f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.callbacks.init_args.{option}"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    message = str(refused.value.code)
    assert message.startswith(expected)
    assert message.count("\n") == 1 and FULL_ERRORS in message.splitlines()[1]
    assert not any(tmp_path.iterdir())


def test_the_full_report_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv(FULL_ERRORS, "1")
    with pytest.raises(SystemExit) as refused:
        main(["fit", "--config", DEMO, "--trainer.callbacks.init_args.method=gradcm"])
    message = str(refused.value.code)
    assert "Does not validate against any of the Union subtypes" in message and "`method`" in message


def test_own_message_finds_the_backticked_line_only():
    assert own_message("Errors:\n  - `alpha` must be in [0, 1], got 2\n  - Not a valid subclass") == (
        "`alpha` must be in [0, 1], got 2"
    )
    assert own_message("unrecognized arguments: --x") is None


def test_a_misspelled_layer_is_refused_before_any_log_folder_exists(tmp_path):
    args = ["fit", "--config", DEMO, f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.callbacks.init_args.layer=model.featurez.7"]
    with pytest.raises(SystemExit) as refused:
        main(args + TINY)
    assert "closest: 'model.features.7'" in str(refused.value.code)
    assert not any(tmp_path.iterdir())


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
    assert f"view it: tensorboard --logdir {folder.parent} --samples_per_plugin images=1000" in out


def test_the_report_is_rank_zeros_alone():
    assert run_report(types.SimpleNamespace(is_global_zero=False, loggers=[])) is None
