"""CAMConfigurationError: a setting that cannot work, one class under every name a user meets it by."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import cam_callback
import cam_callback.callback
from cam_callback import CAMConfigurationError, CAMEngine, compute_cam
from cam_callback.core import errors


def test_it_is_a_value_error_so_value_error_handlers_still_catch_it():
    assert issubclass(CAMConfigurationError, ValueError)
    with pytest.raises(ValueError, match="^`layer`: no such layer$"):
        raise CAMConfigurationError("`layer`: no such layer")


def test_one_class_from_the_top_level_the_callback_floor_and_core():
    assert cam_callback.CAMConfigurationError is errors.CAMConfigurationError
    assert cam_callback.callback.CAMConfigurationError is errors.CAMConfigurationError
    assert "CAMConfigurationError" in cam_callback.__all__
    assert "CAMConfigurationError" in cam_callback.callback.__all__


class Flat(nn.Module):
    """No module gives a spatial map: the images are flattened straight into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(x.flatten(1))
        return out


class Tokens(nn.Module):
    """A patch embedding (the last spatial output), then tokens [B, N, C] through a LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
        out: Tensor = self.head(tokens.mean(dim=1))
        return out


def test_the_engine_raises_it_when_the_model_has_no_spatial_layer_to_pick():
    engine = CAMEngine(Flat(), None)
    message = r"^`layer`: Flat has no module with a spatial \[B, C, h, w\] output; name a layer$"
    with pytest.raises(CAMConfigurationError, match=message) as caught:
        engine(torch.rand(2, 3, 4, 4))
    assert isinstance(caught.value.__cause__, ValueError)  # the error that revealed it, chained
    assert engine.choice is None and engine.layer_names == []


def test_the_engine_names_candidate_layers_when_tokens_follow_the_last_spatial_output():
    message = r"cannot pick a layer of Tokens automatically: its last spatial output, 'embed' .* of 'norm'"
    with pytest.raises(CAMConfigurationError, match=message):
        CAMEngine(Tokens(), None, "gradcam")(torch.rand(2, 3, 16, 16))


class Conv(nn.Module):
    """One convolution then a mean: its layer 'conv' is the one the engine picks when none is named."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x).mean(dim=(2, 3))
        return out


def test_warnings_raised_deep_in_the_package_point_at_the_users_line():
    # compute_cam -> CAMEngine.__call__ -> _pick_layer -> warnings.warn: three frames of ours, then the test.
    with pytest.warns(UserWarning, match="no `layer` given; explaining 'conv'") as caught:
        line = sys._getframe().f_lineno + 1
        compute_cam(Conv(), torch.rand(2, 3, 8, 8))
    assert [(Path(w.filename).resolve(), w.lineno) for w in caught] == [(Path(__file__).resolve(), line)]


def test_the_stacklevel_counts_only_the_frames_inside_the_package():
    # Called from here (outside the package) the warning's own frame is the first outside one: level 1.
    assert errors.caller_stacklevel() == 1
