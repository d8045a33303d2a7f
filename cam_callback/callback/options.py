"""The callback's options, validated once into one frozen object.

:meth:`CallbackOptions.from_arguments` takes the callback's keyword arguments (see the README's option
table) and checks each: a wrong type raises ``TypeError``, a bad value ``ValueError``, each naming the
option, what came and what would be valid. The engine's options become a
:class:`~cam_callback.core.options.CAMOptions`, the drawing options a
:class:`~cam_callback.callback.publishing.Display`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..capture.registry import get_method
from ..core.checks import check_bool, check_choice, check_float, check_int, check_str
from ..core.faithfulness import FAITHFULNESS_NAMES
from ..core.options import CAMOptions
from ..core.smoothing import DEFAULT_SCALES
from ..core.targets import check_target
from ..render import check_normalization, colormap_lut
from ..sinks.encoding import IMAGE_FORMATS
from .classnames import check_class_names
from .publishing import TAG_KINDS, Display
from .samples import KeySpec

__all__ = ["CallbackOptions"]


def _names(name: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a str or a list of str, got {type(value).__name__} {value!r}")
    return tuple(check_str(name, item) for item in value)


def _key(name: str, value: Any) -> KeySpec:
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"`{name}` must be a tuple position (int), a dict key (str) or None, got {value!r}")


def _tag_prefix(value: Any) -> str:
    """The prefix without its outer slashes: a name, or names joined by ``/``, each fit for a folder."""
    text = check_str("tag_prefix", value).strip("/")
    if not text:
        raise ValueError(
            f"`tag_prefix` must name something, got {value!r} (the tags would start with '/'); use a name "
            "such as 'cam'"
        )
    for part in text.split("/"):
        if part in ("", ".", "..") or "\\" in part or "\0" in part:
            raise ValueError(
                f"`tag_prefix`: {value!r} cannot be a folder of the PNG files ({part!r}); use plain names "
                "joined by '/', such as 'cam' or 'attention/cam'"
            )
    return text


def _measure_samples(value: Any) -> int | str | None:
    """None, ``"all"`` or a positive int."""
    if value is None or value == "all":
        return None if value is None else "all"
    if isinstance(value, str):
        raise ValueError(f"`measure_samples` must be a positive int, 'all' or None, got {value!r}")
    return check_int("measure_samples", value, minimum=1)


NAME_MAX = 255
"""The most bytes of one file or folder name on common file systems (ext4, XFS, btrfs, tmpfs, APFS, NTFS)."""


def _layer_names(value: Any) -> tuple[str, ...]:
    """The ``layer`` paths, none empty (their characters are checked by :func:`check_file_names`)."""
    layers = _names("layer", value)
    if "" in layers:
        raise ValueError("`layer` must not be empty: give a dotted module path such as 'features.3', or None")
    return layers


def check_file_names(display: Display, layers: Sequence[str], methods: Sequence[str]) -> None:
    """Refuse a ``tag_prefix`` and layers whose tags cannot name files: a part longer than a file name.

    Each ``/``-separated part of a tag names a folder of the PNG files, and the summary's file is all the
    parts joined by ``_`` plus ``.png``; each must fit :data:`NAME_MAX` bytes (UTF-8), and a layer's name
    must hold no backslash or NUL (the layers picked or resolved at ``setup`` are checked there).

    Raises:
        ValueError: naming the part, its length in bytes and the limit.
    """
    for layer in layers or ("",):
        if "\\" in layer or "\0" in layer or "/" in layer:
            raise ValueError(
                f"`layer` {layer!r} cannot name the PNG files' folder (it holds '/', a backslash or NUL); "
                "give the module a plain name, or explain another layer"
            )
        for method in methods:
            for kind in TAG_KINDS:
                parts = [part for part in display.tag(kind, (layer, method)).split("/") if part]
                names = [*parts, "_".join(parts) + ".png"] if kind == "_summary" else parts
                for name in names:
                    size = len(name.encode("utf-8"))
                    if size > NAME_MAX:
                        shown = name if len(name) <= 60 else f"{name[:40]}...{name[-12:]}"
                        raise ValueError(
                            f"`tag_prefix` {display.tag_prefix[:40]!r} with `layer` {layer[:40]!r}: the file "
                            f"name {shown!r} would be {size} bytes, and a file or folder name holds at most "
                            f"{NAME_MAX} bytes; use a shorter `tag_prefix` (or layer path)"
                        )


@dataclass(frozen=True)
class CallbackOptions:
    """Every option of the callback, validated.

    Attributes:
        layers: the layer paths as given; empty when ``layer`` is None (the engine picks one).
        methods: the methods' registry names.
        num_samples: how many validation samples are explained and shown.
        measure_samples: how many the numbers are averaged over (an int or ``"all"``), or None for the
            ``num_samples`` shown ones (:mod:`~cam_callback.callback.measure`).
        target: ``None``, a word of :data:`~cam_callback.core.targets.TARGET_WORDS`, a class index, a
            target object or a callable.
        every_n_epochs: the validation schedule (0 disables).
        keys: where a batch holds the inputs, labels and masks.
        history_size: the largest side of the maps kept for drift and the summary.
        strict: re-raise a validation's failure instead of warning.
        class_names: names for the captions, or None.
        display: how the maps are drawn and tagged.
        engine: how the engine computes the maps.
        train_samples: how many training samples are explained too (0: none).
        faithfulness: the faithfulness numbers to compute, none by default
            (:data:`~cam_callback.core.faithfulness.FAITHFULNESS_NAMES`).
        alarm: warn (:class:`~cam_callback.core.errors.AttentionWarning`) when the focus numbers say the
            maps of a classifier that has learned settled on a fixed place whatever the object
            (:mod:`~cam_callback.callback.attention`).
    """

    layers: tuple[str, ...]
    methods: tuple[str, ...]
    num_samples: int
    measure_samples: int | str | None
    target: Any
    every_n_epochs: int
    keys: tuple[KeySpec, KeySpec, KeySpec]
    history_size: int
    strict: bool
    class_names: tuple[str, ...] | None
    display: Display
    engine: CAMOptions
    alarm: bool = True
    train_samples: int = 0
    faithfulness: tuple[str, ...] = ()

    @property
    def tag_prefix(self) -> str:
        """The first part of every tag."""
        return self.display.tag_prefix

    @classmethod
    def from_arguments(cls, **arguments: Any) -> CallbackOptions:
        """Check the callback's keyword arguments (all of them, by name) and return them as options.

        Raises:
            TypeError: an option of the wrong type. ValueError: an option with a bad value.
        """
        methods = tuple(get_method(m).name for m in _names("method", arguments["method"]))
        if not methods:
            raise ValueError("`method` must name at least one method")
        colormap_lut(arguments["colormap"], "cpu")  # raises with the valid names
        normalization = check_normalization(arguments["mean"], arguments["std"])
        names = check_class_names(arguments["class_names"])
        scales = arguments["aug_scales"]
        options = cls(
            layers=_layer_names(arguments["layer"]),
            methods=methods,
            num_samples=check_int("num_samples", arguments["num_samples"], minimum=1),
            measure_samples=_measure_samples(arguments["measure_samples"]),
            target=check_target(arguments["target"]),
            every_n_epochs=check_int("every_n_epochs", arguments["every_n_epochs"], minimum=0),
            keys=(
                _key("input_key", arguments["input_key"]),
                _key("label_key", arguments["label_key"]),
                _key("mask_key", arguments["mask_key"]),
            ),
            history_size=check_int("history_size", arguments["history_size"], minimum=1),
            strict=check_bool("strict", arguments["strict"]),
            class_names=tuple(names) if names is not None else None,
            display=Display(
                tag_prefix=_tag_prefix(arguments["tag_prefix"]),
                alpha=check_float("alpha", arguments["alpha"], low=0.0, high=1.0),
                colormap=arguments["colormap"],
                mean=normalization[0] if normalization else None,
                std=normalization[1] if normalization else None,
                image_format=check_choice("image_format", arguments["image_format"], IMAGE_FORMATS),
                log_heatmaps=check_bool("log_heatmaps", arguments["log_heatmaps"]),
                min_tile=check_int("min_display_size", arguments["min_display_size"], minimum=0),
            ),
            engine=CAMOptions(
                reshape=arguments["reshape"],
                eigen_smooth=arguments["eigen_smooth"],
                aug_smooth=arguments["aug_smooth"],
                aug_scales=DEFAULT_SCALES if scales is None else scales,
                chunk_size=arguments["chunk_size"],
            ),
            alarm=check_bool("alarm", arguments["alarm"]),
            train_samples=check_int("train_samples", arguments["train_samples"], minimum=0),
            faithfulness=tuple(
                check_choice("faithfulness", name, FAITHFULNESS_NAMES)
                for name in dict.fromkeys(_names("faithfulness", arguments["faithfulness"]))
            ),
        )
        check_file_names(options.display, options.layers, options.methods)
        return options
