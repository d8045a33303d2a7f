"""The fixed batch: which samples, how they are collated and read, and that no global RNG moves."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from cam_callback.callback.samples import (
    FixedBatch,
    StreamCopy,
    can_iterate_again,
    first_dataloader,
    loader_of_its_own,
    take_fixed_batch,
)


def image(i: int) -> Tensor:
    """Sample ``i``'s image: 3x4x4, every value equal to ``i``."""
    return torch.full((3, 4, 4), float(i))


def mask(i: int) -> Tensor:
    """Sample ``i``'s mask: 4x4 with only pixel (i % 4, 0) set."""
    out = torch.zeros(4, 4, dtype=torch.bool)
    out[i % 4, 0] = True
    return out


def draw_from_every_rng() -> None:
    """What a random transform does: move torch's, Python's and NumPy's global generators."""
    torch.rand(1)
    random.random()
    np.random.rand()


class Samples(Dataset):
    """A map-style dataset of ``length`` samples in one of several layouts; each read draws from all RNGs."""

    def __init__(
        self, length: int = 10, layout: str = "pair", keys: tuple[str, str, str] = ("image", "label", "mask")
    ) -> None:
        self.length = length
        self.layout = layout
        self.keys = keys
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.length:
            raise IndexError(i)
        self.reads.append(i)
        draw_from_every_rng()
        if self.layout == "pair":
            return image(i), i
        if self.layout == "triple":
            return image(i), i, mask(i)
        if self.layout == "dict":
            return dict(zip(self.keys, (image(i), i, mask(i)), strict=True))
        if self.layout == "tensor":
            return image(i)
        if self.layout == "vector":
            return torch.full((5,), float(i)), i
        raise AssertionError(self.layout)


class Stream(IterableDataset):
    """An iterable dataset yielding ``(image(i), i)`` for i < length, drawing from all RNGs on each sample."""

    def __init__(self, length: int = 10, as_dict: bool = False) -> None:
        self.length = length
        self.as_dict = as_dict

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.length):
            draw_from_every_rng()
            yield {"pic": image(i), "cls": i} if self.as_dict else (image(i), i)


def rng_states() -> tuple[Tensor, Any, Any]:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def assert_same_rng(before: tuple[Tensor, Any, Any]) -> None:
    torch_state, python_state, numpy_state = rng_states()
    assert torch.equal(torch_state, before[0])
    assert python_state == before[1]
    assert numpy_state[0] == before[2][0]
    assert np.array_equal(numpy_state[1], before[2][1])
    assert numpy_state[2:] == before[2][2:]


def expected_inputs(indices: list[int]) -> Tensor:
    return torch.stack([image(i) for i in indices])


# ---------------------------------------------------------------- which samples


def test_shuffled_loader_still_gives_the_first_samples_in_order() -> None:
    dataset = Samples(10)
    loader = DataLoader(dataset, batch_size=3, shuffle=True)
    batch = take_fixed_batch(loader, 4)
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2, 3]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2, 3]
    assert batch.masks is None
    assert dataset.reads == [0, 1, 2, 3]  # only the samples needed are read


def test_distributed_sampler_shard_does_not_matter() -> None:
    dataset = Samples(10)
    sampler: DistributedSampler[int] = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    assert list(sampler)[:3] != [0, 1, 2]  # the loader itself would not give samples 0, 1, 2
    assert len(list(sampler)) == 5
    dataset.reads.clear()
    batch = take_fixed_batch(loader, 3)
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2]
    assert dataset.reads == [0, 1, 2]


def test_more_samples_than_the_dataset_holds() -> None:
    batch = take_fixed_batch(DataLoader(Samples(3), batch_size=2), 8)
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2]


def test_uses_the_loaders_collate_fn() -> None:
    calls: list[int] = []

    def collate(samples: list[Any]) -> Any:
        calls.append(len(samples))
        images, labels = zip(*samples, strict=True)
        return torch.stack(images) * 2, torch.tensor(labels) + 100

    batch = take_fixed_batch(DataLoader(Samples(10), batch_size=4, collate_fn=collate), 3)
    assert calls == [3]  # one call, with the three samples
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2]) * 2)
    assert batch.labels is not None and batch.labels.tolist() == [100, 101, 102]


def test_loader_without_batching_still_gives_a_batch() -> None:
    # batch_size=None: the loader's collate_fn converts single samples; the fixed batch is still stacked.
    loader = DataLoader(Samples(10), batch_size=None)
    batch = take_fixed_batch(loader, 2)
    assert torch.equal(batch.inputs, expected_inputs([0, 1]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1]


# ---------------------------------------------------------------- batch layouts


def test_tuple_with_mask() -> None:
    batch = take_fixed_batch(DataLoader(Samples(10, "triple"), batch_size=4), 3)
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2]
    assert batch.masks is not None and torch.equal(batch.masks, torch.stack([mask(0), mask(1), mask(2)]))


def test_bare_tensor_batches_have_no_labels() -> None:
    batch = take_fixed_batch(DataLoader(Samples(10, "tensor"), batch_size=4), 2)
    assert torch.equal(batch.inputs, expected_inputs([0, 1]))
    assert batch.labels is None and batch.masks is None


def test_dict_with_default_keys() -> None:
    batch = take_fixed_batch(DataLoader(Samples(10, "dict"), batch_size=4), 2)
    assert torch.equal(batch.inputs, expected_inputs([0, 1]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1]
    assert batch.masks is not None and torch.equal(batch.masks, torch.stack([mask(0), mask(1)]))


def test_dict_with_custom_keys() -> None:
    dataset = Samples(10, "dict", keys=("pic", "cls", "seg"))
    loader = DataLoader(dataset, batch_size=4)
    batch = take_fixed_batch(loader, 2, input_key="pic", label_key="cls", mask_key="seg")
    assert torch.equal(batch.inputs, expected_inputs([0, 1]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1]
    assert batch.masks is not None and torch.equal(batch.masks, torch.stack([mask(0), mask(1)]))
    # Without the keys, nothing under an unknown name is taken for labels or masks.
    with pytest.raises(ValueError, match="expected an image batch"):
        take_fixed_batch(loader, 2)


def test_tuple_positions_as_keys() -> None:
    # -1 counts from the end.
    batch = take_fixed_batch(DataLoader(Samples(10, "triple"), batch_size=4), 2, label_key=1, mask_key=-1)
    assert batch.labels is not None and batch.labels.tolist() == [0, 1]
    assert batch.masks is not None and torch.equal(batch.masks, torch.stack([mask(0), mask(1)]))


def test_an_explicit_label_key_that_holds_no_labels_is_an_error() -> None:
    # (image, label, mask) with the mask named as the labels: it used to be dropped without a word and the
    # predicted class explained instead.
    loader = DataLoader(Samples(10, "triple"), batch_size=4)
    with pytest.raises(ValueError, match=r"`label_key`: 2 holds a bool tensor of shape \[2, 4, 4\], not "
                       r"labels of each sample \(a \[B\] or \[B, C\] tensor, here B=2\)"):
        take_fixed_batch(loader, 2, label_key=2)
    with pytest.raises(ValueError, match=r"`label_key`: 0 holds a float32 tensor of shape \[2, 3, 4, 4\]"):
        take_fixed_batch(loader, 2, label_key=0)


class Masked(Dataset):
    """(image 3x16x16, label, mask of ``mask_shape``) samples."""

    def __init__(self, mask_shape: tuple[int, ...], keys: bool = False) -> None:
        self.mask_shape, self.keys = mask_shape, keys

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> Any:
        sample = (torch.zeros(3, 16, 16), i, torch.ones(self.mask_shape))
        return dict(zip(("image", "label", "mask"), sample, strict=True)) if self.keys else sample


@pytest.mark.parametrize(
    "mask_shape", [(5, 7), (8, 8), (1, 16, 8), (16,)], ids=["5x7", "8x8", "1x16x8", "flat"]
)
@pytest.mark.parametrize("keys", [False, True], ids=["tuple", "dict"])
def test_masks_of_another_size_than_the_images_are_an_error(mask_shape, keys) -> None:
    # They used to be nearest-resized onto the image without a word, and energy_in_mask logged from them.
    loader = DataLoader(Masked(mask_shape, keys), batch_size=2)
    if mask_shape == (16,) and not keys:
        assert take_fixed_batch(loader, 2).masks is None  # a third item that is no mask, found by default
        with pytest.raises(ValueError, match="`mask_key`: 2 holds"):
            take_fixed_batch(loader, 2, mask_key=2)
        return
    with pytest.raises(ValueError, match=r"but the images are 2 x 16x16: masks must be \[B, H, W\]"):
        take_fixed_batch(loader, 2)


@pytest.mark.parametrize("mask_shape", [(16, 16), (1, 16, 16), (4,)], ids=["HxW", "1xHxW", "box"])
def test_masks_of_the_images_size_and_boxes_are_taken(mask_shape) -> None:
    batch = take_fixed_batch(DataLoader(Masked(mask_shape), batch_size=2), 3)
    assert batch.masks is not None and batch.masks.shape == (3, *mask_shape)


def test_unknown_dict_key_names_it_and_lists_the_keys() -> None:
    loader = DataLoader(Samples(10, "dict"), batch_size=4)
    expected = r"`input_key`: 'pic' is not in the batch; keys: 'image', 'label', 'mask'"
    with pytest.raises(KeyError, match=expected):
        take_fixed_batch(loader, 2, input_key="pic")
    with pytest.raises(KeyError, match=r"`mask_key`: 'seg' is not in the batch"):
        take_fixed_batch(loader, 2, mask_key="seg")


def test_bad_tuple_keys() -> None:
    loader = DataLoader(Samples(10, "pair"), batch_size=4)
    with pytest.raises(KeyError, match=r"`label_key`: position 5 is out of range for a batch of 2 items"):
        take_fixed_batch(loader, 2, label_key=5)
    with pytest.raises(KeyError, match=r"`input_key`: 'image' is not a position, and the batch is a list"):
        take_fixed_batch(loader, 2, input_key="image")


def test_non_image_inputs_are_refused() -> None:
    loader = DataLoader(Samples(10, "vector"), batch_size=4)
    expected = r"`input_key`: expected an image batch \[B, C, H, W\], found \(2, 5\)"
    with pytest.raises(ValueError, match=expected):
        take_fixed_batch(loader, 2)
    with pytest.raises(ValueError, match=r"expected an image batch \[B, C, H, W\], found \(2,\)"):
        take_fixed_batch(loader, 2, input_key=1)


# ---------------------------------------------------------------- random number generators


@pytest.mark.parametrize("layout", ["pair", "dict"])
def test_no_global_rng_moves_for_a_map_style_dataset(layout: str) -> None:
    torch.manual_seed(11)
    random.seed(12)
    np.random.seed(13)
    dataset = Samples(10, layout)
    loader = DataLoader(dataset, batch_size=4, shuffle=True)
    before = rng_states()
    take_fixed_batch(loader, 5)
    assert dataset.reads == [0, 1, 2, 3, 4]  # the dataset did draw, five times from each generator
    assert_same_rng(before)


def test_no_global_rng_moves_for_an_iterable_dataset() -> None:
    torch.manual_seed(21)
    random.seed(22)
    np.random.seed(23)
    loader = DataLoader(Stream(10), batch_size=3)
    before = rng_states()
    batch = take_fixed_batch(loader, 5)
    assert_same_rng(before)
    # Reading the loader directly does move torch's generator (it draws a base seed).
    list(iter(loader))
    assert not torch.equal(torch.get_rng_state(), before[0])
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2, 3, 4]))


def test_rng_is_restored_when_reading_fails() -> None:
    loader = DataLoader(Samples(10, "vector"), batch_size=4)
    before = rng_states()
    with pytest.raises(ValueError, match="expected an image batch"):
        take_fixed_batch(loader, 3)
    assert_same_rng(before)


# ---------------------------------------------------------------- iterable datasets


def test_iterable_dataset_takes_the_first_samples_across_batches() -> None:
    batch = take_fixed_batch(DataLoader(Stream(10), batch_size=3), 7)
    assert torch.equal(batch.inputs, expected_inputs(list(range(7))))
    assert batch.labels is not None and batch.labels.tolist() == list(range(7))


def test_iterable_dataset_shorter_than_requested() -> None:
    batch = take_fixed_batch(DataLoader(Stream(4), batch_size=3), 9)
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2, 3]))


def test_iterable_dataset_with_custom_keys() -> None:
    loader = DataLoader(Stream(10, as_dict=True), batch_size=2)
    batch = take_fixed_batch(loader, 3, input_key="pic", label_key="cls")
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2]))
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2]


class CountingLoader(DataLoader):
    """A DataLoader that counts how often it is iterated (a loop may be reading it)."""

    iterated = 0

    def __iter__(self) -> Any:
        type(self).iterated += 1
        return super().__iter__()


def test_a_loader_of_its_own_reads_an_iterable_dataset_without_iterating_the_loop_s_loader() -> None:
    def collate(items: list[Any]) -> Any:
        return torch.utils.data.default_collate(items)

    trainers = CountingLoader(Stream(10), batch_size=3, collate_fn=collate)
    own = loader_of_its_own(trainers)
    assert own is not trainers and own.batch_size == 3 and own.collate_fn is collate and own.num_workers == 0
    batch = take_fixed_batch(own, 5)
    assert CountingLoader.iterated == 0
    assert torch.equal(batch.inputs, expected_inputs([0, 1, 2, 3, 4]))
    indexed = DataLoader(Samples(10, "pair"), batch_size=4)
    assert loader_of_its_own(indexed) is indexed  # read by index: never iterated anyway


def test_empty_iterable_dataset() -> None:
    with pytest.raises(ValueError, match="the dataloader yielded no batch"):
        take_fixed_batch(DataLoader(Stream(0), batch_size=3), 2)


# ---------------------------------------------------------------- FixedBatch


def test_fixed_batch_to_moves_every_tensor_and_copies() -> None:
    batch = FixedBatch(torch.ones(2, 3, 4, 4), torch.tensor([1, 2]), None)
    moved = batch.to("meta")
    assert moved is not batch
    assert moved.inputs.device.type == "meta"
    assert moved.labels is not None and moved.labels.device.type == "meta"
    assert moved.masks is None
    assert batch.inputs.device.type == "cpu"  # the original stays where it was


@pytest.mark.parametrize("with_masks", [True, False])
def test_fixed_batch_state_dict_round_trip(with_masks: bool) -> None:
    inputs = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4).requires_grad_()
    masks = torch.stack([mask(0), mask(3)]) if with_masks else None
    batch = FixedBatch(inputs, torch.tensor([4, 7]), masks)
    state = batch.state_dict()
    assert set(state) == {"inputs", "labels", "masks"}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = FixedBatch.from_state_dict(torch.load(buffer, weights_only=True))
    assert not restored.inputs.requires_grad
    assert torch.equal(restored.inputs, inputs.detach())
    assert restored.labels is not None and restored.labels.tolist() == [4, 7]
    if with_masks:
        assert restored.masks is not None and torch.equal(restored.masks, torch.stack([mask(0), mask(3)]))
    else:
        assert restored.masks is None


def test_fixed_batch_from_minimal_state() -> None:
    restored = FixedBatch.from_state_dict({"inputs": torch.zeros(1, 3, 2, 2)})
    assert restored.labels is None and restored.masks is None


# ---------------------------------------------------------------- first_dataloader


def test_first_dataloader_finds_the_first_loader() -> None:
    first = DataLoader(Samples(2), batch_size=1)
    second = DataLoader(Samples(3), batch_size=1)
    assert first_dataloader(first) is first
    assert first_dataloader([first, second]) is first
    assert first_dataloader((second, first)) is second
    assert first_dataloader({"val": second, "test": first}) is second
    assert first_dataloader([[], {"a": [None, second]}, first]) is second
    assert first_dataloader({"a": {}, "b": [first]}) is first
    # Strings beside the loaders are skipped (a one-letter string holds itself).
    assert first_dataloader({"name": "v", "loaders": ["val", first]}) is first


@pytest.mark.parametrize("loaders", [None, [], {}, [None, 3], {"a": [[]]}, "val", b"v", Samples(2)])
def test_first_dataloader_without_a_loader(loaders: Any) -> None:
    assert first_dataloader(loaders) is None


def test_first_dataloader_result_is_usable() -> None:
    loader = first_dataloader({"val": [DataLoader(Samples(6, "triple"), batch_size=2, shuffle=True)]})
    assert loader is not None
    batch = take_fixed_batch(loader, 2)
    assert torch.equal(batch.inputs, expected_inputs([0, 1]))
    assert batch.masks is not None and batch.masks.shape == (2, 4, 4)


class SharedIterator(IterableDataset):
    """A one-shot stream: every ``iter()`` hands out the same iterator over ``count`` samples."""

    def __init__(self, count: int) -> None:
        self.samples = [(torch.full((3, 4, 4), float(i)), torch.tensor(i % 3)) for i in range(count)]
        self._shared = iter(self.samples)

    def __iter__(self) -> Iterator[Any]:
        return self._shared


class FreshIterators(IterableDataset):
    """A stream that starts over at every ``iter()`` (a generator)."""

    def __iter__(self) -> Iterator[Any]:
        yield from ((torch.zeros(3, 4, 4), torch.tensor(0)) for _ in range(4))


class SelfIterator(IterableDataset):
    """An iterator that is its own dataset."""

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise StopIteration


def test_which_loaders_can_be_read_again_without_taking_samples_from_a_loop() -> None:
    assert can_iterate_again(DataLoader(TensorDataset(torch.zeros(4, 3, 4, 4)), batch_size=2))
    assert can_iterate_again(DataLoader(FreshIterators(), batch_size=2))
    assert not can_iterate_again(DataLoader(SharedIterator(4), batch_size=2))
    assert not can_iterate_again(DataLoader(SelfIterator(), batch_size=2))
    shared = SharedIterator(4)
    can_iterate_again(DataLoader(shared, batch_size=2))
    assert len(list(shared)) == 4  # asking took nothing


def test_a_stream_copy_holds_the_first_samples_the_loop_read() -> None:
    copy = StreamCopy(num_samples=3)
    batches = list(DataLoader(SharedIterator(8), batch_size=2))
    for batch in batches:
        copy.add(batch)
    assert copy.full and len(copy.parts) == 2  # batches after the third sample are not copied
    batch = copy.fixed_batch()
    assert batch is not None and batch.labels is not None
    assert [float(x[0, 0, 0]) for x in batch.inputs] == [0.0, 1.0, 2.0]
    assert batch.labels.tolist() == [0, 1, 2]
    batches[0][0].fill_(-1.0)  # the loop's own tensors may change later: the copy does not
    assert float(batch.inputs[0, 0, 0, 0]) == 0.0
    assert StreamCopy(num_samples=2).fixed_batch() is None
