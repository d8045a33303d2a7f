"""Entry point of ``python -m cam_callback``."""

from .demo.cli import main

if __name__ == "__main__":
    main()
