"""Refused command lines as a person meets them: the own message first and short, nothing left behind."""

from __future__ import annotations

import pytest

from cam_callback.demo.cli import main
from cam_callback.demo.cli_errors import FULL_ERRORS, explain, own_message, unknown_option

from .cli_helpers import DEMO, TINY


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


PARSER_REPORT = (
    "Parser key \"trainer.callbacks\":\n  Does not validate against any of the Union subtypes\nErrors:\n"
    "  - `alpha` must be in [0, 1], got 2\n  - Not a valid subclass of Callback"
)


def test_explain_shows_the_own_line_and_a_hint(monkeypatch):
    monkeypatch.delenv(FULL_ERRORS, raising=False)
    assert explain(ValueError(PARSER_REPORT)) == (
        "error: `alpha` must be in [0, 1], got 2\n"
        "(set CAM_CALLBACK_FULL_ERRORS=1 to see the parser's full report)"
    )


def test_explain_shows_everything_on_request_or_without_an_own_line(monkeypatch):
    monkeypatch.setenv(FULL_ERRORS, "1")
    assert explain(ValueError(PARSER_REPORT)) == f"error: {PARSER_REPORT}"
    monkeypatch.setenv(FULL_ERRORS, "")  # empty: not a request
    assert explain(ValueError(PARSER_REPORT)).startswith("error: `alpha` must be in [0, 1], got 2\n(set ")
    assert explain(TypeError("unrecognized arguments: --x")) == "error: unrecognized arguments: --x"


def test_a_misspelled_layer_is_refused_before_any_log_folder_exists(tmp_path):
    args = ["fit", "--config", DEMO, f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.callbacks.init_args.layer=model.featurez.7"]
    with pytest.raises(SystemExit) as refused:
        main(args + TINY)
    assert "closest: 'model.features.7'" in str(refused.value.code)
    assert not any(tmp_path.iterdir())


def test_an_unknown_option_is_one_line_with_the_nearest_option(tmp_path, monkeypatch):
    monkeypatch.delenv(FULL_ERRORS, raising=False)
    args = ["fit", "--config", DEMO, f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.callbacks.init_args.alpah=0.3"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    lines = str(refused.value.code).splitlines()
    assert lines[0] == (
        "error: --trainer.callbacks.init_args.alpah: GradCAMCallback takes no option 'alpah' "
        "(did you mean 'alpha'?)"
    )
    assert len(lines) == 2 and FULL_ERRORS in lines[1]
    assert not any(tmp_path.iterdir())


def test_unknown_option_reads_the_parsers_report():
    report = (
        'Parser key "model":\n  Problem with given class_path \'cam_callback.demo.ImageClassifier\':\n'
        "    Option 'num_clases' is not accepted\n"
    )
    assert unknown_option(report) == (
        "--model.init_args.num_clases: ImageClassifier takes no option 'num_clases' "
        "(did you mean 'num_classes'?)"
    )
    # jsonargparse 4.27 (the declared floor) words it inside the Union report of a callbacks list.
    older = (
        'error: Parser key "trainer.callbacks":\n  Does not validate against any of the Union subtypes\n'
        "  Errors:\n    - Problem with given class_path 'cam_callback.GradCAMCallback':\n"
        '        Validation failed: No action for key "alpah" to check its value.\n'
    )
    assert unknown_option(older) == (
        "--trainer.callbacks.init_args.alpah: GradCAMCallback takes no option 'alpah' (did you mean 'alpha'?)"
    )
    nowhere = "Problem with given class_path 'no.such.Thing':\n  Option 'x' is not accepted"
    assert unknown_option(nowhere) == "`x`: Thing takes no option 'x'"  # no class to read: no suggestion
    assert unknown_option("error: something else") is None


def test_the_usage_line_names_the_module_not_main_py(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["/somewhere/cam_callback/__main__.py", "--help"])
    with pytest.raises(SystemExit):
        main()
    assert capsys.readouterr().out.startswith("usage: python -m cam_callback ")
