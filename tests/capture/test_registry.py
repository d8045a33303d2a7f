"""The method registry: three typed kinds of method, each computing its own part of the map."""

from __future__ import annotations

import pytest
import torch

from cam_callback.capture.guided import GuidedMethod
from cam_callback.capture.perturbation import PerturbationMethod
from cam_callback.capture.probe import LayerProbe
from cam_callback.capture.registry import METHODS, get_method, method_names
from cam_callback.core.methods import LayerMethod, gradcam


def test_every_name_maps_to_one_typed_method():
    kinds = {name: type(method).__name__ for name, method in METHODS.items()}
    assert kinds == {
        "gradcam": "LayerMethod", "gradcam++": "LayerMethod", "xgradcam": "LayerMethod",
        "hirescam": "LayerMethod", "layercam": "LayerMethod", "eigencam": "LayerMethod",
        "scorecam": "PerturbationMethod", "ablationcam": "PerturbationMethod",
        "guided-backprop": "GuidedMethod", "guided-gradcam": "GuidedMethod",
        "gradcam-elementwise": "LayerMethod", "eigengradcam": "LayerMethod", "kpcacam": "LayerMethod",
        "randomcam": "LayerMethod",
        "shapleycam": "ShapleyMethod", "finercam": "FinerMethod", "fullgrad": "FullGradMethod",
    }
    assert method_names() == list(kinds)
    needs = {name for name, method in METHODS.items() if method.needs_gradients}
    assert needs == {
        "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "guided-gradcam", "gradcam-elementwise",
        "eigengradcam", "shapleycam", "finercam",
    }


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("GradCAMElementWise", "gradcam-elementwise"), ("KPCA_CAM", "kpcacam"), ("EigenGradCAM", "eigengradcam"),
     ("ShapleyCAM", "shapleycam"), ("FinerCAM", "finercam"), ("FullGrad", "fullgrad"),
     ("GradCAMPlusPlus", "gradcam++"), ("GradCAM", "gradcam"), ("XGradCAM", "xgradcam"),
     ("HiResCAM", "hirescam"), ("LayerCAM", "layercam"), ("EigenCAM", "eigencam"), ("ScoreCAM", "scorecam"),
     ("AblationCAM", "ablationcam"),
     ("RandomCAM", "randomcam"), ("GuidedGradCAM", "guided-gradcam"), ("guidedbackprop", "guided-backprop")],
)
def test_pytorch_grad_cams_class_names_find_our_methods(spelling: str, name: str):
    assert get_method(spelling) is METHODS[name]
    assert spelling.lower() not in METHODS or spelling.lower() == name  # an alias names no method of its own


def test_a_layer_method_that_needs_gradients_refuses_to_run_without():
    a = torch.rand(1, 2, 3, 3)
    with pytest.raises(ValueError, match="gradcam needs the gradients"):
        get_method("gradcam").compute(a, None)  # type: ignore[union-attr]
    assert get_method("eigencam").compute(a, None).shape == (1, 3, 3)  # type: ignore[union-attr]


def test_a_perturbation_method_combines_its_measured_weights():
    """Weights [[2, -1]] over channels A0 = 1 and A1 = [[0, 3]]: ReLU(2 * 1 - A1) = [[2, 0]]."""
    activations = torch.tensor([[[[1.0, 1.0]], [[0.0, 3.0]]]])
    method = PerturbationMethod("fixed", lambda probe: torch.tensor([[2.0, -1.0]]))
    probe = LayerProbe(torch.nn.Identity(), torch.zeros(1, 1, 1, 2), torch.nn.Identity(), activations,
                       torch.tensor([0]), torch.tensor([1.0]), None, 4)
    assert torch.equal(method.layer_map(probe), torch.tensor([[[2.0, 0.0]]]))
    assert method.needs_gradients is False


def test_a_guided_method_multiplies_its_layer_part_into_the_saliency():
    plain, gradcam_part = GuidedMethod("plain"), GuidedMethod("times", LayerMethod("gradcam", gradcam))
    saliency = torch.ones(1, 1, 2, 2)
    assert plain.saliency(saliency, None) is saliency
    layer_map = torch.tensor([[[0.0, 2.0], [4.0, 4.0]]])  # normalised per image to [0, 0.5, 1, 1]
    assert torch.equal(gradcam_part.saliency(saliency, layer_map), torch.tensor([[[[0.0, 0.5], [1.0, 1.0]]]]))
    with pytest.raises(ValueError, match="times needs the map of its layer part"):
        gradcam_part.saliency(saliency, None)
    assert (plain.needs_gradients, gradcam_part.needs_gradients) == (False, True)
