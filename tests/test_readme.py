"""Every Python and YAML example in README.md runs as printed (tiny as they are), so none can crash a reader;
every name it tells a reader to import is importable from where it says.

A fenced ``python`` or ``yaml`` block is run unless its text holds the marker ``# not run: <why>``, visible
to the reader too. Python blocks run one by one, each in a fresh namespace, in a fresh working folder;
YAML blocks are parsed, and those that are whole configs (with ``trainer`` and ``model``) are run through
the command line. The counts are pinned, so a block that stops being run (or found) fails here.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "# not run:"
FENCE = re.compile(r"^```(python|yaml)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

PACKAGE = ROOT / "cam_callback"


def _ours(caught: warnings.WarningMessage) -> bool:
    """A warning of the callback's (its messages name it) or raised in the package's code.

    The file is compared by its folder, not by name: a virtual environment's path may hold "cam_callback"
    (a dependency's warning from ``.../cam_callback-compat/envs/...`` is not ours).
    """
    path = Path(caught.filename).resolve()
    return "GradCAMCallback" in str(caught.message) or path.is_relative_to(PACKAGE)


def blocks(text: str) -> list[tuple[str, int, str]]:
    """Every fenced python or yaml block: (language, line number, code)."""
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)]


TEXT = README.read_text(encoding="utf-8")
BLOCKS = blocks(TEXT)
RUN = [(lang, line, code) for lang, line, code in BLOCKS if MARKER not in code]
PYTHON = [(line, code) for lang, line, code in RUN if lang == "python"]


def test_the_extractor_finds_every_block_and_honours_the_marker():
    text = "a\n```python\nx = 1\n```\n```yaml\n# not run: a fragment\nb: 2\n```\n```bash\nls\n```\n"
    found = blocks(text)
    assert [(lang, line) for lang, line, _ in found] == [("python", 2), ("yaml", 5)]
    assert [MARKER in code for _, _, code in found] == [False, True]


def test_the_number_of_run_blocks_is_pinned():
    # Use it in your own training, EarlyStopping/ModelCheckpoint, W&B, MLflow, your own target, the
    # functional core; the YAML target fragment and Hydra's train.py entry point are marked as not run.
    assert len(PYTHON) == 6
    assert len(BLOCKS) - len(RUN) == 2


@pytest.mark.parametrize(("line", "code"), PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_a_python_example_runs_as_printed(line, code, tmp_path, monkeypatch):
    if "WandbLogger" in code:
        pytest.importorskip("wandb")
        for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))
    if "MLFlowLogger" in code:
        pytest.importorskip("mlflow")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the examples' tempfile folders, cleaned with the test's
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})  # noqa: S102
    ours = [str(w.message) for w in caught if _ours(w)]
    assert ours == []
    # A checkpoint named after a metric makes no folder of the metric's "/" parts.
    assert not [p for p in tmp_path.rglob("cam_drift*") if p.is_dir()]
    if "ModelCheckpoint" in code:
        (checkpoint,) = tmp_path.rglob("*.ckpt")
        assert re.fullmatch(r"epoch\d+-attention0\.\d{3}\.ckpt", checkpoint.name)


def test_every_yaml_block_parses_and_whole_configs_run(tmp_path, monkeypatch):
    from cam_callback.demo.cli import main

    monkeypatch.chdir(tmp_path)
    parsed = 0
    for lang, line, code in BLOCKS:
        if lang != "yaml":
            continue
        config = yaml.safe_load(code)
        parsed += 1
        assert isinstance(config, dict), f"README.md:{line} is not a mapping"
        if MARKER in code or not {"trainer", "model"} <= set(config):
            continue
        path = tmp_path / f"readme_{line}.yaml"
        path.write_text(code)
        main(["fit", "--config", str(path), "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
              "--trainer.limit_val_batches=1"])
    assert parsed == 1


IMPORTS = sorted(
    {
        (module, name.strip())
        for module, names in re.findall(r"from (cam_callback[\w.]*) import ([\w, ]+)", TEXT)
        for name in names.split(",")
        if name.strip()
    }
)
DOTTED = sorted(set(re.findall(r"`(cam_callback(?:\.\w+)+)`", TEXT)))


def test_the_readme_names_imports():
    assert ("cam_callback", "CAMConfigurationError") in IMPORTS
    assert ("cam_callback.sinks", "WriteFailure") in IMPORTS
    assert len(IMPORTS) >= 6 and len(DOTTED) >= 5


@pytest.mark.parametrize(("module", "name"), IMPORTS, ids=[f"{m}.{n}" for m, n in IMPORTS])
def test_every_from_import_in_the_readme_works(module, name):
    assert getattr(importlib.import_module(module), name) is not None


@pytest.mark.parametrize("path", DOTTED)
def test_every_dotted_name_in_the_readme_exists(path):
    try:
        importlib.import_module(path)
    except ModuleNotFoundError:
        parent, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(parent), name), path
