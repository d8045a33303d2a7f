"""Class-activation maps without Lightning: ``compute_cam`` for one map, ``CAMEngine`` for many at once.

Explains a few synthetic shape images with a plain PyTorch model and writes one picture: a row per image,
the image first, then one Grad-CAM overlay per (layer, method)::

    python examples/compute_cam_example.py                     # torchvision resnet18, random weights
    python examples/compute_cam_example.py --model tinycnn     # the demo's small CNN, random weights
    python examples/compute_cam_example.py --checkpoint logs/demo/version_0/checkpoints/epoch=5-step=378.ckpt

Random weights show the mechanics only: the maps mean something once the model is trained, so try
``--checkpoint`` with a checkpoint of ``python -m cam_callback fit --config configs/demo.yaml``.
"""

from __future__ import annotations

import argparse
import os

import cv2
import torch
import torchvision
from torch.nn import functional as F

from cam_callback import CAMEngine, compute_cam
from cam_callback.core.drift import energy_in_mask
from cam_callback.demo import ShapesDataset
from cam_callback.demo.classifier import ImageClassifier, TinyCNN
from cam_callback.render import image_grid, overlay_grid, to_display

# Two layers per model: the last convolutional stage and the one before it (finer, less semantic).
LAYERS = {"resnet18": ["layer4", "layer3"], "tinycnn": ["features.-1", "features.5"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=sorted(LAYERS), default="resnet18", help="the model, randomly initialised"
    )
    parser.add_argument("--checkpoint", help="an ImageClassifier checkpoint (.ckpt) to explain instead")
    parser.add_argument("--methods", nargs="+", default=["gradcam", "gradcam++"], help="CAM methods")
    parser.add_argument("--num-images", type=int, default=4, help="how many validation images to explain")
    parser.add_argument("--image-size", type=int, help="input side (default: 224 for resnet18, else 64)")
    parser.add_argument("--tile", type=int, default=128, help="side of each tile in the picture, in pixels")
    parser.add_argument("--out", default=os.path.join("out", "cam_example.png"), help="PNG to write")
    return parser.parse_args(argv)


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    """The network to explain, in eval mode, and its architecture name."""
    if args.checkpoint:
        # A LightningModule checkpoint: take the plain network out of it (`ImageClassifier.model`).
        classifier = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu")
        return classifier.model.eval(), classifier.hparams.arch
    torch.manual_seed(0)  # the same random weights on every run
    if args.model == "resnet18":
        return torchvision.models.resnet18(weights=None).eval(), "resnet18"
    return TinyCNN(num_classes=4).eval(), "tinycnn"


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    model, arch = load_model(args)
    layers = LAYERS.get(arch)
    if layers is None:
        raise SystemExit(f"no default layers for {arch!r}; add them to LAYERS")

    # Images: the first validation images of the demo (ShapesDataModule(seed=0) validates on seed 1).
    # Each sample is normalised ((x - 0.5) / 0.29) and comes with its class and its object mask.
    size = args.image_size or (224 if arch == "resnet18" else 64)
    dataset = ShapesDataset(length=args.num_images, image_size=size, num_classes=4, seed=1)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([s["image"] for s in samples])  # [B, 3, H, W]
    labels = torch.stack([s["label"] for s in samples])  # [B]
    masks = torch.stack([s["mask"] for s in samples])  # [B, H, W] bool

    # 1. One map: Grad-CAM of each image's true class at the last layer. The result is [B, H, W], upsampled
    #    to the input's size and normalised to [0, 1] per image; raw=True gives the layer's own resolution.
    #    `target` may also be "predicted" or one class index for all images.
    cam = compute_cam(model, images, layers[0], method="gradcam", target=labels)
    raw = compute_cam(model, images, layers[0], method="gradcam", target=labels, raw=True)
    print(f"compute_cam at {layers[0]!r}: maps {tuple(cam.shape)}, raw maps {tuple(raw.shape)}")

    # 2. Many maps: every (layer, method) pair from a single forward and backward pass. Build the engine
    #    once and call it on each batch; the model is left exactly as it was (mode, gradients, hooks).
    engine = CAMEngine(model, layers, args.methods)
    result = engine(images, target=labels)
    keys = [(layer, method) for layer in engine.layer_names for method in engine.method_names]
    print(f"CAMEngine: {len(keys)} maps per image from one pass")
    print(f"  {'layer':<12} {'method':<10} {'raw size':<9} on object")
    for layer, method in keys:
        maps = result.normalized(layer, method)  # [B, H, W] in [0, 1]
        h, w = result.raw[(layer, method)].shape[-2:]
        share = energy_in_mask(maps, masks).mean()  # share of the map that falls on the object
        print(f"  {layer:<12} {method:<10} {f'{h}x{w}':<9} {share:.2f}")

    # 3. The picture: a column of images, then one column of overlays per (layer, method).
    mean, std = ShapesDataset.MEAN, ShapesDataset.STD
    shown = F.interpolate(images, size=(args.tile, args.tile), mode="bilinear", align_corners=False)
    names = [dataset.classes[int(y)] for y in labels]
    image_column = image_grid(to_display(shown, mean, std), nrow=1, captions=names)
    maps = torch.stack([result.normalized(*key) for key in keys], dim=1)  # [B, K, H, W]
    overlays = overlay_grid(
        shown.repeat_interleave(len(keys), dim=0),  # tile order: image by image, then pair by pair
        maps.flatten(0, 1),  # resized to the tile size by overlay_grid
        alpha=0.5,
        colormap="jet",
        mean=mean,
        std=std,
        nrow=len(keys),
        captions=[f"{layer} {method}" for layer, method in keys] + [""] * (len(keys) * (len(samples) - 1)),
    )
    pad = 2  # both grids have 2-pixel borders; drop one of the two where they meet
    picture = torch.cat([image_column[:, :, :-pad], overlays], dim=2)  # uint8 [3, H', W'] RGB

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    cv2.imwrite(args.out, picture.permute(1, 2, 0).flip(-1).numpy())  # OpenCV writes BGR
    print(f"wrote {args.out} ({picture.shape[2]}x{picture.shape[1]} pixels)")
    return args.out


if __name__ == "__main__":
    main()
