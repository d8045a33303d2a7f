"""The fixed batch the callback explains every epoch: taken once from a DataLoader without moving any RNG."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, default_collate

__all__ = [
    "DetectionBatch", "FixedBatch", "KeySpec", "StreamCopy", "can_iterate_again", "first_dataloader",
    "loader_of_its_own", "module_device", "preserved_rng", "sample_count", "take_fixed_batch", "take_samples",
]

KeySpec = int | str | None

INPUT_KEYS = ("image", "images", "img", "input", "inputs", "x", "pixel_values")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")
MASK_KEYS = ("mask", "masks", "segmentation", "box", "boxes", "bbox")


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global RNG states (CPU and initialised CUDA devices) on exit."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@dataclass
class FixedBatch:
    """Inputs ``[B, C, H, W]``; when the data has them, labels ``[B]`` and masks ``[B, H, W]`` or boxes."""

    inputs: Tensor
    labels: Tensor | None = None
    masks: Tensor | None = None

    def to(self, device: torch.device | str) -> FixedBatch:
        """A copy on ``device``."""
        with torch.inference_mode(False):
            return FixedBatch(
                self.inputs.to(device),
                self.labels.to(device) if self.labels is not None else None,
                self.masks.to(device) if self.masks is not None else None,
            )

    def state_dict(self) -> dict[str, Tensor | None]:
        """Plain CPU tensors (safe for ``weights_only`` checkpoint loading)."""
        return {k: (v.detach().cpu() if v is not None else None) for k, v in vars(self).items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor | None]) -> FixedBatch:
        """Rebuild from :meth:`state_dict`."""
        return cls(state["inputs"], state.get("labels"), state.get("masks"))  # type: ignore[arg-type]


@dataclass
class DetectionBatch(FixedBatch):
    """A detection batch: labels ``[B]`` the class of each sample's first object and masks its box ``[B, 4]``.

    A sample without objects has label -1 and the empty box ``(0, 0, 0, 0)``.
    """

    task: ClassVar[str] = "detection"


def _detection_batch(batch: Any) -> DetectionBatch | None:
    """Read torchvision's detection collate, ``(images, targets)`` as tuples (``tuple(zip(*batch))``)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
        return None
    images, targets = batch[0], batch[1]
    if not (isinstance(images, (tuple, list)) and isinstance(targets, (tuple, list)) and images):
        return None
    if not all(isinstance(t, Mapping) for t in targets) or not all(isinstance(i, Tensor) for i in images):
        return None
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) != 1:
        raise ValueError(
            f"detection images of different sizes {sorted(sizes)}: the callback explains one [B, C, H, W] "
            "batch, so give the validation images one size"
        )
    labels, boxes = [], []
    for target in targets:
        found = target.get("boxes")
        kinds = target.get("labels")
        has_one = isinstance(found, Tensor) and found.numel() >= 4
        boxes.append(found.reshape(-1, 4)[0].float() if has_one else torch.zeros(4))
        labels.append(int(kinds.reshape(-1)[0]) if has_one and isinstance(kinds, Tensor) else -1)
    return DetectionBatch(
        torch.stack(list(images)).detach(), torch.tensor(labels), torch.stack(boxes).to(images[0].device)
    )


def module_device(module: nn.Module) -> torch.device:
    """A LightningModule's ``device``, or that of a plain module's first parameter."""
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(module.parameters()).device


def first_dataloader(loaders: Any) -> DataLoader | None:
    """The first DataLoader in what Lightning holds (one loader, a list/tuple or a dict of them)."""
    if isinstance(loaders, DataLoader):
        return loaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, Sequence) and not isinstance(loaders, (str, bytes)):
        for item in loaders:
            found = first_dataloader(item)
            if found is not None:
                return found
    return None


def _pick(batch: Any, key: KeySpec, defaults: Sequence[str], position: int | None, what: str) -> Any:
    if isinstance(batch, Mapping):
        if key is None:
            key = next((k for k in defaults if k in batch), None)
            return batch[key] if key is not None else None
        if key not in batch:
            raise KeyError(f"`{what}_key`: {key!r} is not in the batch; keys: {', '.join(map(repr, batch))}")
        return batch[key]
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        index = position if key is None else key
        if index is None:
            return None
        if not isinstance(index, int):
            raise KeyError(
                f"`{what}_key`: {index!r} is not a position, and the batch is a {type(batch).__name__}"
            )
        if key is None and index >= len(batch):
            return None
        if not -len(batch) <= index < len(batch):
            raise KeyError(
                f"`{what}_key`: position {index} is out of range for a batch of {len(batch)} items"
            )
        return batch[index]
    if isinstance(batch, Tensor):
        return batch if what == "input" else None
    raise TypeError(f"cannot read the {what} from a batch of type {type(batch).__name__}")


def split_batch(
    batch: Any, input_key: KeySpec = None, label_key: KeySpec = None, mask_key: KeySpec = None
) -> FixedBatch:
    """Read inputs, labels and masks from a collated batch.

    Defaults fit ``(x, y)`` / ``(x, y, mask)`` tuples, dicts with common keys (``image``/``input``/``x``,
    ``label``/``target``/``y``, ``mask``/``box``) and torchvision's detection batches ``(images, targets)``
    (tuples of image tensors and of dicts with ``boxes`` and ``labels``, read as a :class:`DetectionBatch`).

    An explicit ``label_key`` or ``mask_key`` whose value cannot be used is an error; so are masks whose
    size is not the images', and anything under a mask's name. Found by default, a value that is no label
    per sample, or a third tuple item that is no mask at all, is left out.

    Raises:
        KeyError: a key or position that is not in the batch.
        ValueError: no image batch under ``input_key``; labels or masks that do not fit (see above).
    """
    if input_key is None:
        detection = _detection_batch(batch)
        if detection is not None:
            return detection
    inputs = _pick(batch, input_key, INPUT_KEYS, 0, "input")
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"`input_key`: expected an image batch [B, C, H, W], found {got}")
    labels = _labels(_pick(batch, label_key, LABEL_KEYS, 1, "label"), label_key, len(inputs))
    found = _pick(batch, mask_key, MASK_KEYS, 2, "mask")
    masks = _masks(found, mask_key, inputs, guessed=mask_key is None and not isinstance(batch, Mapping))
    return FixedBatch(inputs.detach(), labels, masks)


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _labels(value: Any, key: KeySpec, count: int) -> Tensor | None:
    """Labels of each sample, or None when taken by default and unusable.

    ``[B]`` integer classes or float targets, ``[B, C]`` multi-hot labels or ``[B, 1]`` regression targets.
    """
    if isinstance(value, Tensor) and value.dim() in (1, 2) and len(value) == count and not value.is_complex():
        if value.dim() == 2 or value.dtype != torch.bool:
            return value
    if key is not None:
        raise ValueError(
            f"`label_key`: {key!r} holds {_described(value)}, not labels of each sample (a [B] or [B, C] "
            f"tensor, here B={count}); point `label_key` at the labels, or leave it None (with "
            "target='predicted' when the batches carry none)"
        )
    return None


def _masks(value: Any, key: KeySpec, inputs: Tensor, guessed: bool) -> Tensor | None:
    """Masks ``[B, H, W]`` / ``[B, 1, H, W]`` of the images' size or boxes ``[B, 4]``; None if there are none.

    ``guessed``: the value is merely the third item of a tuple, which may be something else than masks.
    """
    count, height, width = len(inputs), int(inputs.shape[-2]), int(inputs.shape[-1])
    if not isinstance(value, Tensor):
        if key is None:
            return None
        raise ValueError(f"`mask_key`: {key!r} holds {_described(value)}, not masks or boxes")
    boxes = value.dim() == 2 and value.shape[1] == 4
    masks = value.dim() == 3 or (value.dim() == 4 and value.shape[1] == 1)
    if not (boxes or masks) and guessed:
        return None  # a third tuple item of another kind
    if (boxes or masks) and len(value) == count and (boxes or tuple(value.shape[-2:]) == (height, width)):
        return value
    what = "the masks hold" if key is None else f"{key!r} holds"
    raise ValueError(
        f"`mask_key`: {what} {_described(value)}, but the images "
        f"are {count} x {height}x{width}: masks must be [B, H, W] (or [B, 1, H, W]) of the images' size, "
        "or boxes [B, 4] (x1, y1, x2, y2 in pixels); resize the masks with the images in the dataset, or "
        "point `mask_key` at the right item"
    )


def take_fixed_batch(
    loader: DataLoader,
    num_samples: int,
    input_key: KeySpec = None,
    label_key: KeySpec = None,
    mask_key: KeySpec = None,
) -> FixedBatch:
    """The first ``num_samples`` samples of ``loader``'s dataset, collated as the loader collates them.

    Map-style datasets are indexed directly (0, 1, 2, ...), so the result does not depend on the sampler
    (shuffling, or a distributed sampler's shard). No global RNG moves: Python's, NumPy's and torch's states
    are restored, even though random transforms may draw while the samples are read.
    """
    with preserved_rng(), torch.inference_mode(False):  # normal tensors, even when read during validate()
        dataset = loader.dataset
        collate = loader.collate_fn if loader.batch_size is not None else default_collate
        if not isinstance(dataset, IterableDataset) and hasattr(dataset, "__len__"):
            count = min(num_samples, len(dataset))
            batch = collate([dataset[i] for i in range(count)])
        else:
            batch = _take_from_iterable(loader, num_samples, input_key)
    return split_batch(batch, input_key, label_key, mask_key)


def sample_count(loader: DataLoader) -> int:
    """How many samples ``loader``'s map-style dataset holds.

    Raises:
        ValueError: an iterable dataset, or one without a length (its samples cannot be read by index).
    """
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            f"`measure_samples` needs a dataset read by index (with __len__), got {type(dataset).__name__}; "
            "leave `measure_samples` None to measure on the `num_samples` samples"
        )
    return len(dataset)


def take_samples(
    loader: DataLoader, indices: range, keys: tuple[KeySpec, KeySpec, KeySpec] = (None, None, None)
) -> FixedBatch:
    """The samples ``indices`` of ``loader``'s map-style dataset, collated as the loader collates them.

    Each sample is read with the global RNGs seeded by its index (random transforms draw the same every
    time, whoever reads it), and every global RNG is restored afterwards: none moves.
    """
    dataset = loader.dataset
    collate = loader.collate_fn if loader.batch_size is not None else default_collate
    with preserved_rng(), torch.inference_mode(False):
        samples = []
        for index in indices:
            random.seed(index)
            np.random.seed(index)
            torch.random.default_generator.manual_seed(index)  # the CPU one: transforms run there
            samples.append(dataset[index])
        batch = collate(samples)
    return split_batch(batch, *keys)


def loader_of_its_own(loader: DataLoader) -> DataLoader:
    """A loader to read ``loader``'s first samples from without touching ``loader`` itself.

    A map-style dataset is read by index (``loader`` is returned: it is never iterated). An
    ``IterableDataset`` gets a new single-process DataLoader with ``loader``'s batch size and collate
    function: iterating ``loader`` itself would reset the iterator a loop may be reading (with persistent
    workers, ``iter`` hands back the same one) and draw from its generator.
    """
    dataset = loader.dataset
    if not isinstance(dataset, IterableDataset) and hasattr(dataset, "__len__"):
        return loader
    return DataLoader(dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn, num_workers=0)


def can_iterate_again(loader: DataLoader) -> bool:
    """Whether reading ``loader``'s first samples leaves the samples its loops read untouched.

    True for a map-style dataset (its samples are indexed, never iterated) and for an ``IterableDataset``
    whose ``__iter__`` gives a fresh iterator at each call; False for one that hands out one shared
    iterator, or is an iterator itself: a one-shot stream, where every sample taken is one a loop loses.
    ``__iter__`` is called twice to tell, and neither iterator is advanced.
    """
    dataset = loader.dataset
    if not isinstance(dataset, IterableDataset) and hasattr(dataset, "__len__"):
        return True
    first, second = iter(dataset), iter(dataset)
    return first is not second and first is not cast(Any, dataset)


def _clone(batch: Any) -> Any:
    """A copy of a batch's tensors (normal tensors, even of inference ones), the rest as it is."""
    if isinstance(batch, Tensor):
        return batch.detach().clone()
    if isinstance(batch, Mapping):
        return {key: _clone(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        items = [_clone(item) for item in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


class StreamCopy:
    """The first batches a loop reads from a one-shot stream, copied until ``num_samples`` are held.

    The fixed batch is then made from them (:meth:`fixed_batch`), so the stream loses no sample to it.
    """

    def __init__(self, num_samples: int, input_key: KeySpec = None) -> None:
        self.num_samples = num_samples
        self.input_key = input_key
        self.parts: list[Any] = []
        self.count = 0

    @property
    def full(self) -> bool:
        """Whether enough samples are held."""
        return self.count >= self.num_samples

    def add(self, batch: Any) -> None:
        """Copy ``batch`` (as the loop got it, on any device) unless enough samples are held."""
        if self.full:
            return
        with torch.inference_mode(False):
            copied = _clone(batch)
        self.parts.append(copied)
        self.count += len(split_batch(copied, self.input_key).inputs)

    def fixed_batch(self, label_key: KeySpec = None, mask_key: KeySpec = None) -> FixedBatch | None:
        """The first ``num_samples`` samples held, read as :func:`split_batch` reads them; None before any."""
        if not self.parts:
            return None
        joined = _join(self.parts, self.num_samples, self.input_key)
        return split_batch(joined, self.input_key, label_key, mask_key)


def _take_from_iterable(loader: DataLoader, num_samples: int, input_key: KeySpec = None) -> Any:
    parts: list[Any] = []
    taken = 0
    for batch in loader:
        parts.append(batch)
        taken += len(split_batch(batch, input_key).inputs)
        if taken >= num_samples:
            break
    if not parts:
        raise ValueError("the dataloader yielded no batch")
    return _join(parts, num_samples, input_key)


def _join(parts: list[Any], num_samples: int, input_key: KeySpec) -> Any:
    """Batches joined into one of at most ``num_samples`` samples."""
    if input_key is None and _detection_batch(parts[0]) is not None:  # tuples of samples: join them
        return tuple(tuple(x for p in parts for x in p[k])[:num_samples] for k in range(len(parts[0])))
    return _concat(parts, num_samples)


def _concat(parts: list[Any], limit: int) -> Any:
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)[:limit]
    if isinstance(first, Mapping):
        return {k: _concat([p[k] for p in parts], limit) for k in first}
    if isinstance(first, Sequence) and not isinstance(first, (str, bytes)):
        items = [_concat([p[i] for p in parts], limit) for i in range(len(first))]
        kind: Any = type(first)
        return kind(*items) if hasattr(first, "_fields") else kind(items)
    return first
