"""CAMOptions: the engine's options, validated once, shared by CAMEngine, compute_cam and the callback."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TinyNet

from cam_callback import CAMEngine, GradCAMCallback, compute_cam
from cam_callback.core.options import CAMOptions
from cam_callback.core.tokens import TokenGrid


def test_defaults_and_derived_reshape():
    options = CAMOptions()
    assert (options.reshape, options.eigen_smooth, options.aug_smooth) == (None, False, False)
    assert (options.aug_scales, options.chunk_size, options.reshape_fn) == ((1.0, 1.1, 0.9), 64, None)
    tokens = CAMOptions(reshape="tokens:2x3", aug_scales=[1, 0.5])
    assert tokens.reshape_fn == TokenGrid((2, 3), drop_class_token=True)
    assert tokens.aug_scales == (1.0, 0.5)
    fields = (tokens.reshape, tokens.eigen_smooth, tokens.aug_smooth, tokens.aug_scales, tokens.chunk_size)
    assert fields == ("tokens:2x3", False, False, (1.0, 0.5), 64)
    # the engine's keywords make the same options
    engine = CAMEngine(TinyNet(), "features.3", reshape="tokens:2x3", aug_scales=[1, 0.5])
    assert engine.options == tokens and engine.options.reshape_fn == tokens.reshape_fn


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CAMOptions().chunk_size = 3  # type: ignore[misc]


BAD = [
    (dict(eigen_smooth="yes"), TypeError, "`eigen_smooth` must be a bool"),
    (dict(aug_smooth=1), TypeError, "`aug_smooth` must be a bool"),
    (dict(chunk_size=2.0), TypeError, "`chunk_size` must be an int"),
    (dict(chunk_size=True), TypeError, "`chunk_size` must be an int"),
    (dict(chunk_size=0), ValueError, "`chunk_size` must be at least 1"),
    (dict(aug_scales=[]), ValueError, "`aug_scales` must hold at least one scale"),
    (dict(aug_scales=[1.0, -1.0]), ValueError, "`aug_scales` must be finite and positive"),
    (dict(reshape="tokenz"), ValueError, "`reshape`: unknown 'tokenz'"),
    (dict(reshape=3), TypeError, "`reshape` must be None, a callable or a string"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD)
def test_one_check_whichever_way_the_option_comes_in(kwargs, error, match, tiny_net: TinyNet):
    """The options object, the engine, compute_cam and the callback raise the same type and message."""
    with pytest.raises(error, match=match):
        CAMOptions(**kwargs)
    with pytest.raises(error, match=match):
        CAMEngine(tiny_net, "features.3", **kwargs)
    with pytest.raises(error, match=match):
        compute_cam(tiny_net, torch.zeros(1, 3, 8, 8), "features.3", **kwargs)
    with pytest.raises(error, match=match):
        GradCAMCallback(layer="features.3", **kwargs)


def test_the_engine_and_the_callback_hold_the_same_options():
    callback = GradCAMCallback(layer="features.3", eigen_smooth=True, aug_scales=[1.0], chunk_size=5)
    assert callback.options.engine == CAMOptions(eigen_smooth=True, aug_scales=(1.0,), chunk_size=5)
    engine = CAMEngine.from_options(TinyNet(), "features.3", "gradcam", callback.options.engine)
    assert engine.options is callback.options.engine
    assert (engine.layer_names, engine.method_names) == (["features.3"], ["gradcam"])
    same = CAMEngine(TinyNet(), "features.3", eigen_smooth=True, aug_scales=[1.0], chunk_size=5)
    assert same.options == callback.options.engine
