"""``python -m cam_callback fit --config configs/demo.yaml``: LightningCLI over any model and data module.

The YAML names the classes (``class_path``) of the model, the data and the callbacks, so the same entry point
serves the synthetic demo and a user's own image folder; every option can be overridden on the command line
(``--trainer.max_epochs=3``, ``--trainer.callbacks.init_args.alpha=0.3``).
"""

from __future__ import annotations

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import ArgsType, LightningCLI

__all__ = ["main"]


def main(args: ArgsType = None, *, run: bool = True) -> LightningCLI:
    """Run the command line (``fit``, ``validate``, ...); ``args`` replaces ``sys.argv[1:]`` when given."""
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )
