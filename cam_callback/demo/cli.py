"""``python -m cam_callback fit --config configs/demo.yaml``: LightningCLI over any model and data module.

The YAML names the classes (``class_path``) of the model, the data and the callbacks, so the same entry point
serves the synthetic demo and a user's own image folder; every option can be overridden on the command line
(``--trainer.max_epochs=3``, ``--trainer.callbacks.init_args.alpha=0.3``). The configs name classes by
their short names (``GradCAMCallback``, ``TensorBoardLogger``, ``ImageClassifier``), which each CLI resolves
in its own namespace, so they run through both this entry (``pytorch_lightning``) and
``python -m cam_callback.lightning`` (the unified ``lightning`` package).
"""

from __future__ import annotations

import sys
from typing import Any

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import ArgsType, LightningCLI

from ..callback.pl import GradCAMCallback
from .classifier import ImageClassifier
from .cli_errors import ShortErrors
from .cli_report import RunReport
from .datamodules import ImageFolderDataModule, ShapesDataModule

__all__ = ["CALLBACK_EPILOG", "main", "run_cli"]

# Imported so that the configs' short class names resolve to this namespace's classes.
_SHORT_NAMES = (GradCAMCallback, ImageClassifier, ImageFolderDataModule, ShapesDataModule)


CALLBACK_EPILOG = (
    "Grad-CAM maps: add cam_callback's callback with --trainer.callbacks+=GradCAMCallback (or a `callbacks:` "
    "entry `class_path: GradCAMCallback` in the YAML, as configs/demo.yaml does), set its options with "
    "--trainer.callbacks.init_args.<option>=..., and list them all with --trainer.callbacks.help "
    "GradCAMCallback."
)
"""The end of each subcommand's ``--help``, which otherwise names the callback nowhere."""

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_cli(
    cli_class: Any, module: type[Any], datamodule: type[Any], args: ArgsType, run: bool,
    command: str = "cam_callback",
) -> Any:
    """Build ``cli_class`` (either namespace's LightningCLI) over subclasses of the two base classes.

    With short parser errors (:mod:`.cli_errors`), a report of where a fit went (:mod:`.cli_report`) and
    :data:`CALLBACK_EPILOG` at the end of each subcommand's ``--help`` (LightningCLI's ``parser_kwargs``).
    ``command`` is the module run by ``python -m``, which the usage line names (not ``__main__.py``).
    """
    cli = type(cli_class.__name__, (ShortErrors, RunReport, cli_class), {})
    quiet: dict[str, Any] = {"exit_on_error": False}  # errors reach ShortErrors, which prints the useful line
    if sys.argv[0].endswith(".py"):  # python -m: argparse would say __main__.py; a console script is named
        quiet["prog"] = f"python -m {command}"
    return cli(
        module,
        datamodule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            **quiet,
            **{name: {"exit_on_error": False, "epilog": CALLBACK_EPILOG} for name in SUBCOMMANDS},
        },
    )


def main(args: ArgsType = None, *, run: bool = True) -> LightningCLI:
    """Run the command line (``fit``, ``validate``, ...); ``args`` replaces ``sys.argv[1:]`` when given."""
    cli: LightningCLI = run_cli(LightningCLI, LightningModule, LightningDataModule, args, run)
    return cli
