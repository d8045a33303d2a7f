"""The callback's options: validated once into one frozen object, each bad value named."""

from __future__ import annotations

import dataclasses

import pytest

from cam_callback import GradCAMCallback
from cam_callback.callback.options import CallbackOptions
from cam_callback.core.options import CAMOptions


def test_defaults():
    options = GradCAMCallback().options
    assert (options.layers, options.methods, options.num_samples) == ((), ("gradcam",), 16)
    assert (options.target, options.every_n_epochs, options.keys) == (None, 1, (None, None, None))
    assert (options.history_size, options.strict) == (32, False)
    assert options.class_names is None and options.tag_prefix == "cam"
    display = options.display
    assert (display.alpha, display.colormap, display.mean, display.std) == (0.5, "jet", None, None)
    assert (display.image_format, display.log_heatmaps, display.min_tile) == ("jpeg", True, 128)
    assert options.engine == CAMOptions()
    assert options.alarm is True and options.train_samples == 0 and options.faithfulness == ()
    assert GradCAMCallback(faithfulness="insertion").options.faithfulness == ("insertion",)


def test_values_are_normalised():
    options = GradCAMCallback(
        "features.3", ["GradCAM", "layercam"], num_samples=3, target=2, input_key="image", label_key=1,
        mean=0.5, std=[0.1, 0.2, 0.3], tag_prefix="/attention/cam/", class_names=["a", "b"],
    ).options
    assert options.layers == ("features.3",)
    assert options.methods == ("gradcam", "layercam")  # registry names, case-insensitive
    assert (options.num_samples, options.target, options.keys) == (3, 2, ("image", 1, None))
    assert (options.display.mean, options.display.std) == ((0.5,), (0.1, 0.2, 0.3))  # one stands for all
    assert options.tag_prefix == "attention/cam" and options.class_names == ("a", "b")


def test_options_are_frozen_and_past_the_first_two_keyword_only():
    options = GradCAMCallback().options
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.num_samples = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        GradCAMCallback("features.3", "gradcam", 8)  # type: ignore[call-arg]


def test_every_argument_must_be_given():
    arguments = dict(vars(GradCAMCallback().options))  # not the arguments: a wrong set of names
    with pytest.raises(KeyError):
        CallbackOptions.from_arguments(**arguments)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="gradcam+++"), ValueError, "valid: gradcam"),
        (dict(colormap="jett"), ValueError, "jet"),
        (dict(alpha=1.5), ValueError, "alpha"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(alarm="no"), TypeError, "alarm"),
        (dict(train_samples=-1), ValueError, "train_samples"),
        (dict(faithfulness=["deletion", "delet"]), ValueError, "faithfulness.*did you mean 'deletion'"),
        (dict(faithfulness=3), TypeError, "faithfulness"),
        (dict(aug_scales=[1.0, -0.5]), ValueError, "aug_scales"),
        (dict(eigen_smooth="yes"), TypeError, "eigen_smooth"),
        (dict(reshape="tokenz"), ValueError, "tokens"),
        (dict(target="labels"), ValueError, "'label', 'predicted'"),
        (dict(mean=[0.5, 0.5, 0.5]), ValueError, "`mean` and `std`"),
        (dict(image_format="jpg"), ValueError, r"valid: 'png', 'jpeg'"),
        (dict(layer=2), TypeError, r"`layer` must be a str or a list of str, got int 2"),
        (dict(mean=[0.5, 0.5], std="a"), TypeError, r"`std` must be a list of numbers, got str"),
        (dict(history_size="a"), TypeError, r"`history_size` must be an int, got str 'a'"),
        (dict(history_size=2.5), TypeError, r"`history_size` must be an int, got float 2.5"),
        (dict(alpha="a"), TypeError, r"`alpha` must be a number, got str 'a'"),
        (dict(num_samples=True), TypeError, r"`num_samples` must be an int, got bool True"),
        (dict(tag_prefix=""), ValueError, r"`tag_prefix` must name something, got ''.*such as 'cam'"),
        (dict(tag_prefix="/"), ValueError, r"`tag_prefix` must name something"),
        (dict(tag_prefix="../cam"), ValueError, r"`tag_prefix`: '../cam' cannot be a folder of the PNG"),
        (dict(tag_prefix="a\\b"), ValueError, r"`tag_prefix`: .* cannot be a folder"),
        (dict(measure_samples="most"), ValueError, r"`measure_samples` must be a positive int, 'all'"),
        (dict(measure_samples=0), ValueError, r"`measure_samples` must be at least 1, got 0"),
        (dict(measure_samples=2.5), TypeError, r"`measure_samples` must be an int, got float 2.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        GradCAMCallback(**kwargs)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (dict(tag_prefix="c" * 300), r"`tag_prefix` 'c{40}' .*would be 30\d bytes.* at most 255 bytes"),
        (dict(tag_prefix="a/" + "é" * 125), r"would be 2\d\d bytes"),  # 125 letters, 250 bytes, + "_saliency"
        (dict(layer="x" * 256), r"`layer` 'x{40}'.* at most 255 bytes"),
        (dict(layer="a\\b"), r"`layer` 'a\\\\b' cannot name the PNG files' folder .*backslash"),
        (dict(layer="a\0b"), r"cannot name the PNG files' folder"),
        (dict(layer="features/3"), r"cannot name the PNG files' folder"),
        (dict(layer=""), r"`layer` must not be empty"),
    ],
)
def test_values_that_cannot_name_files_are_refused_saying_why(arguments, match):
    with pytest.raises(ValueError, match=match):
        GradCAMCallback(**arguments)


def test_the_longest_names_that_fit_are_accepted():
    # The summary file "<prefix>_summary_<layer>_gradcam.png": 200 + 8 + 1 + 10 + 1 + 7 + 4 = 231 bytes.
    assert GradCAMCallback("features.3", tag_prefix="p" * 200).options.tag_prefix == "p" * 200
    with pytest.raises(ValueError, match="would be 256 bytes"):  # one byte too many: 225 + 31
        GradCAMCallback("features.3", tag_prefix="p" * 225)
