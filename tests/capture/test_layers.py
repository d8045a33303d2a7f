"""Finding a target layer by dotted path or by module."""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import pytest
from torch import nn

from cam_callback.capture.layers import layer_names, resolve_layer


def nested() -> nn.Module:
    def block() -> nn.Sequential:
        return nn.Sequential(OrderedDict(conv1=nn.Conv2d(2, 2, 3), relu=nn.ReLU(), conv2=nn.Conv2d(2, 2, 3)))

    model = nn.Module()
    model.stem = nn.Conv2d(3, 2, 3)
    model.layer4 = nn.Sequential(block(), block())
    model.features = nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model.fc = nn.Linear(2, 3)
    return model


def test_dotted_path_with_names_and_indices() -> None:
    model: Any = nested()
    assert resolve_layer(model, "layer4.1.conv2") == ("layer4.1.conv2", model.layer4[1].conv2)
    assert resolve_layer(model, "stem") == ("stem", model.stem)


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("features.-1", "features.2"), ("features.-3", "features.0"), ("layer4.-1.conv1", "layer4.1.conv1"),
     ("layer4.-2", "layer4.0")],
)
def test_negative_indices_count_from_the_end(path: str, canonical: str) -> None:
    model = nested()
    name, module = resolve_layer(model, path)
    assert name == canonical
    assert module is model.get_submodule(canonical)


def test_module_object_gives_its_canonical_name() -> None:
    model: Any = nested()
    assert resolve_layer(model, model.layer4[0].relu) == ("layer4.0.relu", model.layer4[0].relu)


def test_module_not_in_the_model() -> None:
    with pytest.raises(ValueError, match=r"`layer`: the module Conv2d is not a submodule of Module"):
        resolve_layer(nested(), nn.Conv2d(3, 2, 3))


def test_the_model_itself_is_not_a_layer() -> None:
    model = nested()
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, model)


def test_unknown_path_is_named_and_close_names_suggested() -> None:
    with pytest.raises(ValueError, match=r"no module at 'layer4\.1\.conv3'.*closest: 'layer4\.1\.conv2'"):
        resolve_layer(nested(), "layer4.1.conv3")


@pytest.mark.parametrize("path", ["features.3", "features.-4", "fc.0", "layer4.1.conv2.weight", "", "stem.x"])
def test_invalid_paths(path: str) -> None:
    message = rf"no module at {re.escape(repr(path))}.*Top-level children: 'stem', 'layer4'"
    with pytest.raises(ValueError, match=message):
        resolve_layer(nested(), path)


def test_wrong_type() -> None:
    with pytest.raises(TypeError, match="`layer` must be a dotted path"):
        resolve_layer(nested(), 3)  # type: ignore[arg-type]


def test_layer_names_lists_every_submodule_but_the_root() -> None:
    names = layer_names(nested())
    assert "" not in names
    assert names[:3] == ["stem", "layer4", "layer4.0"]
    assert "layer4.1.conv2" in names and "fc" in names
