"""Reading back the event files a run wrote: every image and every scalar, none sampled away."""

from __future__ import annotations

import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_events(path: str | os.PathLike[str]) -> EventAccumulator:
    """The events of the run folder (or event file) ``path``, loaded in full.

    TensorBoard keeps a sample of each tag by default; ``size_guidance`` 0 keeps them all.
    """
    events = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events
