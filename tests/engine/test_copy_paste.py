"""Crowd copy-paste (engine.data.copy_paste): pasted pixels and masks agree, occlusion, and the dataset option."""
from __future__ import annotations

import numpy as np
import pytest

from engine.data.coco import CocoInstanceDataset
from engine.data.copy_paste import CrowdPaste, Patch, cluster_layout, object_patches, paste_crowd
from engine.spec import Normalisation
from tests.data.make_fixtures import write_coco_dataset


def _sample(height: int = 64, width: int = 80) -> tuple:
    """A dark image with one bright 10 x 20 object in the middle."""
    image = np.zeros((2, height, width), np.float32)
    mask = np.zeros((1, height, width), np.uint8)
    mask[0, 27:37, 30:50] = 1
    image[:, mask[0] > 0] = 0.5
    return image, {"masks": mask, "labels": np.array([1], np.int64)}


def _ring_patch(label: int = 2) -> Patch:
    """A 6 x 6 patch whose mask is a ring (the centre pixel outside it) with pixel values 1..36."""
    mask = np.ones((6, 6), bool)
    mask[2:4, 2:4] = False
    return Patch(np.arange(72, dtype=np.float32).reshape(2, 6, 6) + 1, mask, label)


def test_object_patches_cut_each_object_to_its_box_and_skip_tiny_ones() -> None:
    image, target = _sample()
    target = {"masks": np.concatenate([target["masks"], np.zeros((1, 64, 80), np.uint8)]),
              "labels": np.array([1, 2], np.int64)}
    target["masks"][1, 5, 5:8] = 1  # a 1 x 3 sliver: under min_side
    patches = object_patches((image, target), min_side=2)
    assert len(patches) == 1
    assert patches[0].pixels.shape == (2, 10, 20) and patches[0].mask.all() and patches[0].label == 1
    assert np.all(patches[0].pixels == 0.5)
    assert len(object_patches((image, target), min_side=1)) == 2


def test_pasted_objects_carry_their_pixels_labels_and_masks_and_cover_earlier_objects() -> None:
    sample = _sample()
    cfg = CrowdPaste(p=1.0, count=(12, 12), gap=(0.2, 0.2), scale=(1.0, 1.0), background_quantile=None)
    image, target = paste_crowd(sample, [_ring_patch()], cfg, np.random.default_rng(5))
    masks, labels = target["masks"], target["labels"]
    assert masks.dtype == np.uint8 and masks.shape[1:] == (64, 80) and len(masks) == len(labels)
    assert labels[0] == 1 and np.all(labels[1:] == 2) and 1 < len(labels) <= 13
    pasted = masks[1:].astype(bool)
    assert np.all(pasted.sum(axis=0) <= 1)  # one object per pixel
    assert all(m.sum() <= 32 for m in pasted)  # at most the ring's 32 pixels each, clipped at the border
    # every pasted pixel holds a value of the patch, untouched pixels keep the original image
    covered = pasted.any(axis=0)
    assert np.all(image[:, covered] >= 1) and np.array_equal(image[:, ~covered], sample[0][:, ~covered])
    # the first object lost exactly the pixels pasted over it
    assert np.array_equal(masks[0].astype(bool), sample[1]["masks"][0].astype(bool) & ~covered)


def test_paste_is_reproducible_and_a_no_op_without_patches() -> None:
    sample = _sample()
    cfg = CrowdPaste(p=1.0)
    a = paste_crowd(sample, [_ring_patch()], cfg, np.random.default_rng(1))
    b = paste_crowd(sample, [_ring_patch()], cfg, np.random.default_rng(1))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1]["masks"], b[1]["masks"])
    image, target = paste_crowd(sample, [], cfg, np.random.default_rng(1))
    assert image is sample[0] and target is sample[1]


def test_cluster_layout_keeps_neighbours_a_cell_apart() -> None:
    centres = np.array(cluster_layout(20, 10.0, (100.0, 100.0), np.random.default_rng(0)), float)
    assert len(centres) == 20
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)) + np.eye(20) * 1e9
    assert gaps.min() >= 10.0 * (1 - 2 * 0.15) - 1  # grid cell minus both jitters (and rounding)
    assert gaps.min(axis=1).max() <= 10.0 * np.sqrt(2) * 1.3 + 1  # a crowd: every object has a close neighbour
    assert np.abs(centres.mean(axis=0) - 100).max() < 10  # around the centre asked for


def test_objects_go_on_dark_background_only() -> None:
    """Water (0) on the left three quarters, a bright town (0.9) on the right quarter: pasted objects land on
    the water only, unless background_quantile is None."""
    image = np.zeros((1, 64, 128), np.float32)
    image[:, :, 96:] = 0.9
    sample = (image, {"masks": np.zeros((0, 64, 128), np.uint8), "labels": np.zeros(0, np.int64)})
    patch = Patch(np.ones((1, 4, 4), np.float32), np.ones((4, 4), bool), 1)
    on_water = on_town = 0
    for seed in range(20):
        cfg = CrowdPaste(p=1.0, count=(10, 10), gap=(0.5, 0.5), scale=(1.0, 1.0))
        _, target = paste_crowd(sample, [patch], cfg, np.random.default_rng(seed))
        assert not target["masks"][:, :, 96:].any()
        on_water += len(target["masks"])
        _, anywhere = paste_crowd(sample, [patch], CrowdPaste(p=1.0, count=(10, 10), gap=(0.5, 0.5), scale=(1.0, 1.0),
                                                              background_quantile=None), np.random.default_rng(seed))
        on_town += int(anywhere["masks"][:, :, 96:].any())
    assert on_water >= 100  # the darkest of the candidate centres: the clusters sit in the water
    assert on_town > 0


def test_crowd_paste_rejects_a_probability_outside_0_1() -> None:
    with pytest.raises(ValueError, match="probability"):
        CrowdPaste(p=1.5)


def test_dataset_with_crowd_paste_adds_objects_with_consistent_boxes(tmp_path) -> None:
    coco = write_coco_dataset(tmp_path, n_images=3, size=(96, 128))
    norm = Normalisation(mean=(0.5,), std=(0.25,))
    plain = CocoInstanceDataset(coco, tmp_path, norm, [1])
    pasted = CocoInstanceDataset(coco, tmp_path, norm, [1], paste=CrowdPaste(p=1.0, count=(8, 8)))
    plain.sample_seed = pasted.sample_seed = 0
    more = 0
    for i in range(len(plain)):
        _, before = plain[i]
        image, after = pasted[i]
        assert len(after["masks"]) >= len(before["masks"]) and after["masks"].shape[1:] == image.shape[1:]
        more += len(after["masks"]) - len(before["masks"])
        for box, mask in zip(after["boxes"].numpy(), after["masks"].numpy()):
            rows, cols = np.nonzero(mask)
            assert (box[0], box[1], box[2], box[3]) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    assert more > 0  # the empty last image too may get a crowd from a donor
