"""``GradCAMCallback`` for the unified ``lightning`` package, and its command line.

Import it as ``from cam_callback.lightning import GradCAMCallback``; run the demo's command line on
``lightning.pytorch`` with ``python -m cam_callback.lightning fit --config configs/demo.yaml``.
"""

from .callback.lightning import GradCAMCallback

__all__ = ["GradCAMCallback"]

if __name__ == "__main__":
    from .demo.lightning import main

    main()
