"""The engine end to end: exact maps, every method against hand-computed gradients, the model as found."""

from __future__ import annotations

import copy
import warnings
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import TinyNet, fill_deterministic, hand_activation_and_gradient, reference_map
from torch import Tensor, nn

from cam_callback import CAMEngine, CAMResult, compute_cam
from cam_callback.capture.auto_layer import LayerChoice

ALL = [
    "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "gradcam-elementwise",
    "eigengradcam", "kpcacam",
]
SECOND_PASS = ["shapleycam", "finercam", "fullgrad"]


# Independent computations ----------------------------------------------------------------------------------


def hand_gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return (weights * activations).sum(dim=1).clamp(min=0)


def hand_normalized(raw: Tensor, size: tuple[int, int]) -> Tensor:
    up = F.interpolate(raw[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (up - low) / span.clamp(min=1e-30), torch.zeros_like(up))


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "training": {name: m.training for name, m in model.named_modules()},
        "grads": {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
        "state": {name: value.clone() for name, value in model.state_dict().items()},
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference": torch.is_inference_mode_enabled(),
    }


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    for name, grad in before["grads"].items():
        now = after["grads"][name]
        assert (grad is None) == (now is None), name
        assert grad is None or torch.equal(grad, now), name
    for name, value in before["state"].items():
        assert torch.equal(value, after["state"][name]), name
    assert torch.equal(before["rng"], after["rng"])
    assert after["grad_enabled"] == before["grad_enabled"]
    assert after["inference"] == before["inference"]
    assert_no_hooks(model)


def assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        for attribute in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_hooks_always_called",
            "_forward_pre_hooks_with_kwargs",
        ):
            assert not getattr(module, attribute), f"{name or 'root'}.{attribute}"


# The notes' worked examples --------------------------------------------------------------------------------


class PooledLinear(nn.Module):
    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(2, len(weight), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.fc(self.features(x).mean(dim=(2, 3))))


A1 = [[1.0, 0, 2], [3, 5, 0], [1, 1, 1]]
A2 = [[0.0, 1, 0], [3, 1, 0], [1, 0, 1]]
WORKED_L = torch.tensor([[[1 / 3, 0, 2 / 3], [0, 1, 0], [0, 1 / 3, 0]]])


def test_worked_example_of_the_notes() -> None:
    # y^Cat = 3 mean(A^1) - 6 mean(A^2): dy/dA^k_ij = (3/9, -6/9), so alpha = (1/3, -2/3).
    model = PooledLinear([[3.0, -6.0], [1.0, 1.0]])
    inputs = torch.tensor([[A1, A2]])
    torch.testing.assert_close(compute_cam(model, inputs, "features", target=0, raw=True), WORKED_L)
    # L already spans [0, 1] at the input's size, so normalising leaves it as it is.
    torch.testing.assert_close(compute_cam(model, inputs, "features", target=0), WORKED_L)


def conv_linear() -> nn.Sequential:
    model = nn.Sequential(
        nn.Identity(), nn.Conv2d(1, 1, 2, bias=False), nn.Flatten(), nn.Linear(4, 2, bias=False)
    )
    with torch.no_grad():
        cast(nn.Conv2d, model[1]).weight.copy_(torch.tensor([[[[1.0, 0], [1, 2]]]]))
        cast(nn.Linear, model[3]).weight.copy_(torch.tensor([[0.0, 1, 0, 1], [1, 0, 1, 1]]))
    return model


X = torch.tensor([[[[1.0, 2, 3], [1, 1, 2], [2, 1, 2]]]])
DY1_DX = torch.tensor([[0.0, 1, 0], [0, 2, 2], [0, 1, 2]])


def test_gradient_example_through_the_engine() -> None:
    model = conv_linear()
    result = CAMEngine(model, "0", ["hirescam", "gradcam"])(X, target=0)
    torch.testing.assert_close(result.outputs, torch.tensor([[13.0, 15.0]]))
    torch.testing.assert_close(result.scores, torch.tensor([13.0]))
    # HiResCAM with one channel: ReLU(dy_1/dx * x); Grad-CAM: mean(dy_1/dx) * x = 8/9 x.
    torch.testing.assert_close(result.raw[("0", "hirescam")], (DY1_DX * X[0, 0])[None])
    torch.testing.assert_close(result.raw[("0", "gradcam")], 8 / 9 * X[0])


# Every method on a small conv model ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("layer", ["features.3", "features.0"])
def test_every_method_against_hand_gradients(
    tiny_net: TinyNet, images: Tensor, method: str, layer: str
) -> None:
    classes = [3, 1]
    result = CAMEngine(tiny_net, layer, method)(images, target=classes)
    tiny_net.eval()
    module = tiny_net.get_submodule(layer)
    activations, gradients = hand_activation_and_gradient(tiny_net, images, module, classes)
    expected = reference_map(method, activations, gradients)
    assert (expected > 0).any()
    raw = result.raw[(layer, method)]
    assert raw.shape == activations.shape[:1] + activations.shape[2:]
    torch.testing.assert_close(raw.double(), expected, rtol=1e-4, atol=1e-6)
    normalized = hand_normalized(expected, (12, 12))
    torch.testing.assert_close(result.normalized(layer, method), normalized, atol=1e-5, rtol=1e-4)


def test_engine_equals_separate_calls(tiny_net: TinyNet, images: Tensor) -> None:
    layers, methods = ["features.3", "features.0"], ["gradcam", "xgradcam", "eigencam"]
    result = CAMEngine(tiny_net, layers, methods)(images, target=[2, 0])
    assert set(result.raw) == {(layer, method) for layer in layers for method in methods}
    for layer in layers:
        for method in methods:
            alone = compute_cam(tiny_net, images, layer, method=method, target=[2, 0])
            torch.testing.assert_close(result.normalized(layer, method), alone)
            alone_raw = compute_cam(tiny_net, images, layer, method=method, target=[2, 0], raw=True)
            torch.testing.assert_close(result.raw[(layer, method)], alone_raw)


def test_the_shared_pass_stays_one_forward_and_its_maps_stay_the_same(
    tiny_net: TinyNet, images: Tensor
) -> None:
    # Element-wise Grad-CAM, Eigen-Grad-CAM and KPCA-CAM add only their maths, Shapley-CAM and Finer-CAM a
    # backward through the same graph: one forward in all. FullGrad runs its own, the one more forward.
    alone = CAMEngine(tiny_net, "features.3", "gradcam")(images, target=[1, 2])
    tiny_net.forward_calls = 0
    shared = CAMEngine(tiny_net, "features.3", ["gradcam", *ALL[6:], "shapleycam", "finercam"])
    together = shared(images, target=[1, 2])
    assert tiny_net.forward_calls == 1
    CAMEngine(tiny_net, "features.3", ["gradcam", "fullgrad"])(images, target=[1, 2])
    assert tiny_net.forward_calls == 1 + 2
    # The existing method's map is bit for bit what it was alone, create_graph and second backwards or not.
    assert torch.equal(together.raw[("features.3", "gradcam")], alone.raw[("features.3", "gradcam")])


def test_output_shape_dtype_range_device(tiny_net: TinyNet) -> None:
    inputs = torch.randn(3, 3, 12, 16, generator=torch.Generator().manual_seed(4))
    out = compute_cam(tiny_net, inputs, "features.3")
    assert out.shape == (3, 12, 16)
    assert out.dtype == torch.float32
    assert out.device == inputs.device
    assert out.min() >= 0 and out.max() <= 1
    assert not out.requires_grad
    raw = compute_cam(tiny_net, inputs, "features.3", raw=True)
    assert raw.shape == (3, 6, 8)  # the stride-2 conv's resolution
    assert raw.dtype == torch.float32
    assert not raw.requires_grad


def test_engine_argument_errors(tiny_net: TinyNet, images: Tensor) -> None:
    with pytest.raises(ValueError, match=r"`method`: unknown 'gradcam\+\+\+'; valid: gradcam, gradcam\+\+"):
        compute_cam(tiny_net, images, "features.3", method="gradcam+++")
    with pytest.raises(ValueError, match=r"no module at 'features\.9'.*closest: 'features\.\d'"):
        CAMEngine(tiny_net, "features.9")
    with pytest.raises(ValueError, match=r"`layer` must name at least one layer \(or be None to pick one\)"):
        CAMEngine(tiny_net, [])
    with pytest.raises(ValueError, match="`method` must name at least one method"):
        CAMEngine(tiny_net, "fc", [])
    with pytest.raises(ValueError, match=r"`layer` 'fc' gives shape \(2, 5\), not a \[B, C, h, w\] feature"):
        compute_cam(tiny_net, images, "fc")
    with pytest.raises(ValueError, match=r"`inputs` must be a batched image tensor"):
        compute_cam(tiny_net, images[0, 0], "features.3")


def test_without_a_layer_the_engine_picks_one_at_the_first_call_and_says_which(
    tiny_net: TinyNet, images: Tensor
) -> None:
    engine = CAMEngine(tiny_net, None, "gradcam")
    assert engine.layer_names == [] and engine.choice is None  # nothing picked before a batch is seen
    # TinyNet's last module with a spatial output is `features` itself (after its in-place ReLU), 6x6.
    message = r"^no `layer` given; explaining 'features' \(the last module with a spatial output\)$"
    with pytest.warns(UserWarning, match=message):
        result = engine(images, target=[3, 1])
    assert engine.choice == LayerChoice("features", None, "the last module with a spatial output")
    assert engine.layer_names == ["features"] and set(result.raw) == {("features", "gradcam")}
    tiny_net.eval()
    activations, gradients = hand_activation_and_gradient(tiny_net, images, tiny_net.features, [3, 1])
    expected = hand_gradcam(activations, gradients)
    assert expected.shape == (2, 6, 6) and (expected > 0).any()
    torch.testing.assert_close(result.raw[("features", "gradcam")], expected, rtol=1e-4, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the second call explains the same layer silently
        again = engine(images, target=[3, 1])
    torch.testing.assert_close(again.raw[("features", "gradcam")], result.raw[("features", "gradcam")])


def test_compute_cam_without_a_layer_explains_the_picked_one(tiny_net: TinyNet, images: Tensor) -> None:
    with pytest.warns(UserWarning, match="no `layer` given; explaining 'features'"):
        picked = compute_cam(tiny_net, images, target=2)
    torch.testing.assert_close(picked, compute_cam(tiny_net, images, "features", target=2))


class Checkpointed(nn.Module):
    """TinyNet's features run through ``torch.utils.checkpoint`` (reentrant or not)."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.net = fill_deterministic(TinyNet())
        self.reentrant = reentrant

    def forward(self, x: Tensor) -> Tensor:
        features = torch.utils.checkpoint.checkpoint(self.net.features, x, use_reentrant=self.reentrant)
        return cast(Tensor, self.net.fc(self.net.pool(features).flatten(1)))


@pytest.mark.filterwarnings("ignore::UserWarning")  # reentrant: "none of the inputs have requires_grad"
def test_reentrant_checkpointing_around_the_layer_is_named_with_the_fix(images: Tensor) -> None:
    # It used to say only "the target scores do not depend on the chosen layer(s)".
    expected = r"`layer` 'net.features.3'.*use_reentrant=True.*use use_reentrant=False"
    with pytest.raises(RuntimeError, match=expected):
        compute_cam(Checkpointed(reentrant=True), images, "net.features.3")
    maps = compute_cam(Checkpointed(reentrant=False), images, "net.features.3")
    torch.testing.assert_close(maps, compute_cam(fill_deterministic(TinyNet()), images, "features.3"))


def test_a_layer_that_does_not_run(tiny_net: TinyNet, images: Tensor) -> None:
    tiny_net.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(RuntimeError, match=r"layer\(s\) \['unused'\] did not run"):
        compute_cam(tiny_net, images, "unused")
    assert_no_hooks(tiny_net)


def test_reshape_turns_tokens_into_a_feature_map(tiny_net: TinyNet, images: Tensor) -> None:
    # Turn the layer's [B, C, h, w] output into tokens [B, h*w, C] inside the model; `reshape` undoes it.
    class Tokens(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.flatten(2).transpose(1, 2)

    class Back(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.transpose(1, 2).reshape(x.shape[0], -1, 6, 6)

    tokens = copy.deepcopy(tiny_net)
    tokens.features = nn.Sequential(*tiny_net.features[:4], Tokens(), Back(), nn.ReLU(inplace=True))
    expected = compute_cam(tiny_net, images, "features.3", target=1)
    def to_map(t: Tensor) -> Tensor:
        return t.transpose(1, 2).reshape(t.shape[0], -1, 6, 6)

    engine = CAMEngine(tokens, "features.4", reshape=to_map)
    result = engine(images, target=1)
    torch.testing.assert_close(result.normalized("features.4", "gradcam"), expected)
    # The new layer methods and the second backwards see the same feature map through `reshape`.
    newer = [*ALL[6:], *SECOND_PASS]
    on_tokens = CAMEngine(tokens, "features.4", newer, reshape=to_map)(images, target=1)
    on_maps = CAMEngine(tiny_net, "features.3", newer)(images, target=1)
    for method in newer:
        torch.testing.assert_close(on_tokens.raw[("features.4", method)], on_maps.raw[("features.3", method)])


# The model left as found -----------------------------------------------------------------------------------


@pytest.fixture
def used_net(tiny_net: TinyNet) -> TinyNet:
    """TinyNet mid-training: train mode except one submodule, gradients partly accumulated."""
    tiny_net.train()
    tiny_net.features[0].eval()
    generator = torch.Generator().manual_seed(9)
    tiny_net.fc.weight.grad = torch.randn(tiny_net.fc.weight.shape, generator=generator)
    tiny_net.features[3].bias.grad = torch.randn(
        cast(Tensor, tiny_net.features[3].bias).shape, generator=generator
    )
    return tiny_net


def test_the_lifecycle_checks_see_a_training_step(used_net: TinyNet, images: Tensor) -> None:
    # The same checks must notice what a plain train-mode forward and backward change.
    before = snapshot(used_net)
    used_net(images).sum().backward()
    with pytest.raises(AssertionError):
        assert_unchanged(used_net, before)
    assert not torch.equal(before["rng"], torch.get_rng_state())  # dropout drew random numbers
    assert not torch.equal(
        before["state"]["features.1.running_mean"], cast(Tensor, used_net.features[1].running_mean)
    )
    assert before["state"]["features.1.num_batches_tracked"] != used_net.features[1].num_batches_tracked


@pytest.mark.parametrize("method", ALL + SECOND_PASS)
def test_model_left_exactly_as_found(used_net: TinyNet, images: Tensor, method: str) -> None:
    before = snapshot(used_net)
    for _ in range(2):
        compute_cam(used_net, images, "features.3", method=method)
    assert_unchanged(used_net, before)
    assert used_net.training and not used_net.features[0].training and used_net.features[1].training
    assert used_net.features[0].weight.grad is None


def test_engine_with_several_layers_leaves_the_model_as_found(used_net: TinyNet, images: Tensor) -> None:
    before = snapshot(used_net)
    CAMEngine(used_net, ["features.3", "features.1"], ["gradcam++", "eigencam"])(images, target=1)
    assert_unchanged(used_net, before)


class NoisyNet(TinyNet):
    """Draws random numbers in every forward, train or eval."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x + 1e-3 * torch.randn_like(x))


def test_global_rng_restored_even_when_the_model_draws_in_eval_mode(images: Tensor) -> None:

    model = fill_deterministic(NoisyNet()).eval()
    state = torch.get_rng_state()
    model(images)
    assert not torch.equal(state, torch.get_rng_state())  # the model does move the RNG
    state = torch.get_rng_state()
    compute_cam(model, images, "features.3")
    assert torch.equal(state, torch.get_rng_state())


def test_an_eval_model_stays_in_eval(tiny_net: TinyNet, images: Tensor) -> None:
    tiny_net.eval()
    compute_cam(tiny_net, images, "features.3")
    assert not any(m.training for m in tiny_net.modules())


def test_the_users_own_hooks_stay_and_run_once(tiny_net: TinyNet, images: Tensor) -> None:
    calls: list[str] = []
    forward_handle = tiny_net.features[3].register_forward_hook(lambda m, a, o: calls.append("forward"))
    pre_handle = tiny_net.register_forward_pre_hook(lambda m, a: calls.append("pre"))
    compute_cam(tiny_net, images, "features.3")
    assert calls == ["pre", "forward"]
    assert len(tiny_net.features[3]._forward_hooks) == 1 and len(tiny_net._forward_pre_hooks) == 1
    forward_handle.remove()
    pre_handle.remove()
    assert_no_hooks(tiny_net)


def test_left_as_found_when_the_target_is_out_of_range(used_net: TinyNet, images: Tensor) -> None:
    before = snapshot(used_net)
    with pytest.raises(ValueError, match="class 7 is out of range"):
        compute_cam(used_net, images, "features.3", target=7)
    assert_unchanged(used_net, before)


class RaisingNet(TinyNet):
    def forward(self, x: Tensor) -> Tensor:
        self.features(x)
        raise RuntimeError("boom after the layer")


@pytest.mark.parametrize("methods", [["gradcam", "eigencam"], ["shapleycam", "finercam"], ["fullgrad"]])
@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_left_as_found_when_the_forward_raises(mode: str, images: Tensor, methods: list[str]) -> None:

    model = fill_deterministic(RaisingNet())
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    contexts = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
    context = contexts[mode]
    with context():
        before = snapshot(model)
        with pytest.raises(RuntimeError, match="boom after the layer"):
            CAMEngine(model, ["features.3", "features.0"], methods)(images)
        assert_unchanged(model, before)


# Grad mode, inference mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("method", ["gradcam", "eigencam", *SECOND_PASS])
def test_works_under_no_grad_and_inference_mode(
    tiny_net: TinyNet, images: Tensor, mode: str, method: str
) -> None:
    expected = compute_cam(tiny_net, images, "features.3", method=method, target=[1, 2])
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]
    with context():
        inputs = images.clone()  # created under the mode
        state = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        out = compute_cam(tiny_net, inputs, "features.3", method=method, target=[1, 2])
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == state
    torch.testing.assert_close(out, expected)


def test_inputs_created_in_inference_mode(tiny_net: TinyNet, images: Tensor) -> None:
    with torch.inference_mode():
        inputs = images.clone()
    assert inputs.is_inference()
    expected = compute_cam(tiny_net, images, "features.3", target=[1, 2])
    torch.testing.assert_close(compute_cam(tiny_net, inputs, "features.3", target=[1, 2]), expected)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_inference_inputs_with_the_layer_on_the_input() -> None:
    # The captured activation is the input itself here, so it must not stay an inference tensor.
    model = PooledLinear([[3.0, -6.0], [1.0, 1.0]])
    with torch.inference_mode():
        inputs = torch.tensor([[A1, A2]])
        inside = compute_cam(model, inputs, "features", target=0, raw=True)
    torch.testing.assert_close(inside, WORKED_L)
    torch.testing.assert_close(compute_cam(model, inputs, "features", target=0, raw=True), WORKED_L)


# In-place ops after the layer ------------------------------------------------------------------------------


def test_inplace_relu_after_the_layer_does_not_change_the_capture(tiny_net: TinyNet, images: Tensor) -> None:
    classes = [0, 4]
    methods = ["gradcam", "xgradcam", "eigencam"]
    result = CAMEngine(tiny_net, "features.3", methods)(images, target=classes)
    plain = copy.deepcopy(tiny_net).eval()
    plain.features[4] = nn.ReLU(inplace=False)
    activations, gradients = hand_activation_and_gradient(
        plain, images, plain.features[3], classes, clone=False
    )
    assert (activations < 0).any()  # what an overwritten capture would have lost
    with torch.no_grad():
        torch.testing.assert_close(result.outputs, plain(images))
    for method in methods:
        expected = reference_map(method, activations, gradients)
        raw = result.raw[("features.3", method)].double()
        torch.testing.assert_close(raw, expected, rtol=1e-4, atol=1e-6)
        clobbered = reference_map(method, activations.clamp(min=0), gradients)
        assert not torch.allclose(expected, clobbered, atol=1e-4), method


# Reduced precision -----------------------------------------------------------------------------------------


def cpu_autocast_enabled() -> bool:
    """``torch.is_autocast_enabled("cpu")``, also on torch before 2.4, whose ``is_autocast_enabled`` takes no
    device type (CUDA only) and which has ``is_autocast_cpu_enabled()`` instead (deprecated from 2.4)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:
        return torch.is_autocast_cpu_enabled()


@pytest.mark.parametrize("method", ["gradcam", "layercam", "eigencam"])
def test_bfloat16_autocast_and_bfloat16_model(tiny_net: TinyNet, images: Tensor, method: str) -> None:
    expected = compute_cam(tiny_net, images, "features.3", method=method, target=[1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = compute_cam(tiny_net, images, "features.3", method=method, target=[1, 2])
        assert cpu_autocast_enabled()  # compute_cam left the caller's autocast on
    half_model = copy.deepcopy(tiny_net).to(torch.bfloat16)
    half = compute_cam(half_model, images, "features.3", method=method, target=[1, 2])
    half_raw = compute_cam(half_model, images, "features.3", method=method, target=[1, 2], raw=True)
    assert all(p.dtype == torch.bfloat16 for p in half_model.parameters())
    for out in (autocast, half, half_raw):
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
    for out in (autocast, half):
        assert out.min() >= 0 and out.max() <= 1
        torch.testing.assert_close(out, expected, atol=0.08, rtol=0)


# Memory: only the part after the earliest target layer is recorded -----------------------------------------


def staged() -> nn.Sequential:
    """Every stage has its own activation shape, so saved tensors tell where recording started."""
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),  # 0: [2, 5, 16, 16]
        nn.ReLU(),
        nn.Conv2d(5, 7, 3, padding=1),  # 2: [2, 7, 16, 16]
        nn.ReLU(inplace=True),
        nn.Conv2d(7, 9, 3, stride=2, padding=1),  # 4: [2, 9, 8, 8]
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(9, 4),
    )

    return fill_deterministic(model, seed=3)


def saved_shapes(run: object) -> set[tuple[int, ...]]:
    shapes: set[tuple[int, ...]] = set()

    def pack(tensor: Tensor) -> Tensor:
        shapes.add(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()  # type: ignore[operator]
    return shapes


INPUT, OUT0, OUT2 = (2, 3, 16, 16), (2, 5, 16, 16), (2, 7, 16, 16)
WEIGHT0, WEIGHT2 = (5, 3, 3, 3), (7, 5, 3, 3)


def test_the_saved_tensor_check_sees_a_full_graph() -> None:
    model = staged()
    inputs = torch.randn(*INPUT)
    shapes = saved_shapes(lambda: model(inputs))
    assert {INPUT, OUT0, WEIGHT2} <= shapes


def test_nothing_before_the_target_layer_is_recorded() -> None:
    model = staged()
    inputs = torch.randn(*INPUT)
    shapes = saved_shapes(lambda: compute_cam(model, inputs, "2", target=1))
    assert not {INPUT, OUT0, WEIGHT0, WEIGHT2} & shapes
    assert OUT2 in shapes  # conv 4 saved its input, the captured activation


@pytest.mark.parametrize("layers", [["2", "0"], ["0", "2"]])
def test_recording_starts_at_the_earliest_layer_in_either_order(layers: list[str]) -> None:
    model = staged()
    inputs = torch.randn(*INPUT, generator=torch.Generator().manual_seed(2))
    results: list[CAMResult] = []
    shapes = saved_shapes(lambda: results.append(CAMEngine(model, layers, "gradcam")(inputs, target=[1, 3])))
    assert INPUT not in shapes and WEIGHT0 not in shapes
    assert OUT0 in shapes  # conv 2 saved its input: the graph starts at layer 0's output
    (result,) = results
    model.eval()
    for layer in layers:
        activations, gradients = hand_activation_and_gradient(model, inputs, model[int(layer)], [1, 3])
        torch.testing.assert_close(result.raw[(layer, "gradcam")], hand_gradcam(activations, gradients))


class TwoBranches(nn.Module):
    """``b`` (no parameters) runs after ``a`` but on the input, which was computed before ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.ReLU()
        self.c = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.fc((self.a(x) + self.c(self.b(x))).mean(dim=(2, 3))))


def test_a_later_layer_on_a_branch_that_starts_before_the_earliest_one() -> None:
    model = fill_deterministic(TwoBranches(), seed=4)
    inputs = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(6))
    result = CAMEngine(model, ["a", "b"], "hirescam")(inputs, target=[0, 2])
    for layer in ("a", "b"):
        activations, gradients = hand_activation_and_gradient(
            model, inputs.clone().requires_grad_(), model.get_submodule(layer), [0, 2]
        )
        expected = reference_map("hirescam", activations, gradients)
        assert (expected > 0).any()
        torch.testing.assert_close(result.raw[(layer, "hirescam")].double(), expected, rtol=1e-4, atol=1e-6)


# Real architectures, random weights ------------------------------------------------------------------------

# (architecture, layer, constructor options, target classes whose maps are not all zero for both images)
ARCHITECTURES = [
    ("resnet18", "layer4", {}, [3, 8]),
    ("mobilenet_v3_small", "features.-1", {}, [3, 4]),
    ("vgg11", "features.-1", {"init_weights": False}, [0, 9]),
    ("densenet121", "features.norm5", {}, [5, 7]),
    ("efficientnet_b0", "features.-1", {}, [7, 2]),
]


@pytest.mark.parametrize(
    ("name", "layer", "options", "classes"), ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES]
)
def test_torchvision_models_match_a_hand_written_gradcam(
    name: str, layer: str, options: dict, classes: list[int]
) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **options)
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    out = compute_cam(model, inputs, layer, target=classes)
    raw = compute_cam(model, inputs, layer, target=classes, raw=True)
    assert out.shape == (2, 64, 64)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert all(m.training for m in model.modules())  # constructed in train mode, left so

    model.eval()
    module = model.features[-1] if layer == "features.-1" else model.get_submodule(layer)
    activations, gradients = hand_activation_and_gradient(model, inputs, module, classes)
    expected = hand_gradcam(activations, gradients)
    assert ((expected > 0).flatten(1).sum(dim=1) >= 2).all()  # normalising has something to show
    if name == "densenet121":
        assert (activations < 0).any()  # its in-place ReLU after norm5 would have clobbered these
    scale = float(expected.abs().max())
    torch.testing.assert_close(raw, expected, rtol=1e-3, atol=1e-4 * scale)
    torch.testing.assert_close(out, hand_normalized(expected, (64, 64)), rtol=1e-3, atol=1e-3)


# On a CUDA device (marked `cuda`: skipped, saying why, without one; scripts/gpu_check.sh runs them) ---------

GRADIENT_FAMILY = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"]


class _NoTF32:
    """Full float32 matrix products and convolutions on CUDA (TF32 rounds to 10 bits of mantissa)."""

    def __enter__(self) -> None:
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


@pytest.mark.cuda
@pytest.mark.parametrize("method", ALL)
def test_cuda_maps_equal_the_cpu_float64_reference(method):
    model = fill_deterministic(TinyNet()).eval()
    inputs = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    classes = [0, 1, 2, 3, 4, 0]
    # The reference: the model in float64 on the CPU, the formula channel by channel (conftest).
    double = copy.deepcopy(model).double()
    layer = double.features[3]
    activations, gradients = hand_activation_and_gradient(double, inputs.double(), layer, classes)
    reference = reference_map(method, activations, gradients)
    with _NoTF32():
        maps = compute_cam(model.cuda(), inputs.cuda(), "features.3", method, target=classes, raw=True)
    assert maps.device.type == "cuda" and maps.dtype == torch.float32
    error = (maps.cpu().double() - reference).abs().amax()
    assert float(error) <= 1e-4 * float(reference.abs().amax()), method


@pytest.mark.cuda
def test_cuda_maps_are_queued_without_waiting_for_the_device():
    model = fill_deterministic(TinyNet()).eval().cuda()
    inputs = torch.randn(8, 3, 16, 16, device="cuda")
    engine = CAMEngine(model, "features.3", GRADIENT_FAMILY)
    first = engine(inputs, "predicted")  # the first call also checks the layer's layout, once
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises from here on
    try:
        for target in ("predicted", 2):
            result = engine.compute(inputs, target)
            maps = [result.normalized(*key) for key in result.raw]
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    # The final copies, outside the check: the same maps as the full call.
    assert all(bool(torch.isfinite(m).all()) for m in maps)
    again = engine.compute(inputs, "predicted")
    for key in first.raw:
        assert torch.equal(again.normalized(*key).cpu(), first.normalized(*key).cpu()), key


@pytest.mark.cuda
def test_cuda_hook_peak_memory_is_at_most_1_35_plain_forwards():
    model = torchvision.models.resnet18(weights=None).eval().cuda()
    inputs = torch.randn(16, 3, 224, 224, device="cuda")
    engine = CAMEngine(model, "layer4", "gradcam")

    def peak(call: Any) -> int:
        call()  # warm-up: cuDNN picks its algorithms, the caching allocator fills
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    def plain() -> None:
        with torch.inference_mode():
            model(inputs)

    def hook() -> None:  # what the callback's hook does on the device: the maps, normalised
        result = engine.compute(inputs, "predicted")
        result.normalized("layer4", "gradcam")

    forward, maps = peak(plain), peak(hook)
    assert forward > 0 and maps <= 1.35 * forward, (maps / 2**20, forward / 2**20)
