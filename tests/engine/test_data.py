"""COCO dataset (renumbering, polygons -> masks, empty images, bands), joint transforms, seeded splits."""

import json

import numpy as np
import pytest
import torch

from engine.data.coco import CocoInstanceDataset, collate, masks_to_boxes, polygons_to_mask
from engine.data.split import split_coco
from engine.data.transforms import (
    Compose,
    RandomCrop,
    RandomFlip,
    RandomRot90,
    ScaleJitter,
    training_transforms,
)
from engine.errors import UserError
from engine.normalise import normalise, scale_for_dtype
from engine.spec import Normalisation
from tests.data.make_fixtures import object_mask, write_coco_dataset

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

IDENTITY = Normalisation(scale=1.0 / 255.0, mean=(0.0,), std=(1.0,))  # pixels -> [0, 1]


def _dataset(json_path, **kwargs) -> CocoInstanceDataset:
    return CocoInstanceDataset(json_path, json_path.parent, kwargs.pop("normalisation", IDENTITY), **kwargs)


# ------------------------------------------------------------------------------------------ normalise


def test_normalise_scale_clip_mean_std() -> None:
    raw = np.array([[[0, 255], [510, 51]], [[255, 0], [0, 0]]], np.uint16)  # [2,2,2]
    out = normalise(raw, Normalisation(scale=1 / 255, mean=(0.5, 0.0), std=(0.5, 2.0)))
    assert out.dtype == np.float32 and out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[0], [[-1.0, 1.0], [1.0, -0.6]], atol=1e-6)  # 510 clips to 1
    np.testing.assert_allclose(out[1], [[0.5, 0.0], [0.0, 0.0]], atol=1e-6)


def test_normalise_sar_db_and_band_mismatch() -> None:
    amp = np.array([[[10 ** (-30 / 20), 1.0, 10 ** (10 / 20), 1e3]]], np.float32)  # -30, 0, +10, +60 dB
    out = normalise(amp, Normalisation(sar="db", db_min=-30, db_max=10, mean=(0.0,), std=(1.0,)))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.75, 1.0, 1.0], atol=1e-5)
    with pytest.raises(ValueError, match="3 means for 2 bands"):
        normalise(np.zeros((2, 4, 4)), Normalisation(mean=(0.1, 0.2, 0.3), std=(1.0,)))
    assert scale_for_dtype("uint8") == 1 / 255 and scale_for_dtype("uint16") == 1 / 65535
    assert scale_for_dtype("float32") == 1.0


# -------------------------------------------------------------------------------------------- dataset


def test_dataset_items_ids_labels_and_shapes(coco_rgb) -> None:
    coco = json.loads(coco_rgb.read_text())
    assert coco["images"][0]["id"] == 0  # the fixture starts ids at 0, like SSDD/NWPU
    ds = _dataset(coco_rgb)
    assert len(ds) == 4 and ds.class_names == ["ship", "tank"]
    images, targets = collate([ds[i] for i in range(len(ds))])
    assert [t["image_id"] for t in targets] == [1, 2, 3, 4]
    for info, image, t in zip(coco["images"], images, targets):
        n = sum(a["image_id"] == info["id"] for a in coco["annotations"])
        assert image.shape == (3, 96, 128) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].shape == (n,) and t["labels"].dtype == torch.int64
        assert t["masks"].shape == (n, 96, 128) and t["masks"].dtype == torch.uint8
        if n:
            assert set(t["labels"].tolist()) <= {1, 2}
    assert sum(len(t["labels"]) for t in targets) == len(coco["annotations"])


def test_category_ids_renumbered_sorted_and_image_order_kept(tmp_path) -> None:
    path = write_coco_dataset(tmp_path / "c", n_images=3)
    coco = json.loads(path.read_text())
    remap_cat = {1: 7, 2: 3}  # "ship" -> 7, "tank" -> 3: labels follow sorted ids (tank=1, ship=2)
    remap_img = {0: 50, 1: 0, 2: 9}
    for c in coco["categories"]:
        c["id"] = remap_cat[c["id"]]
    for im in coco["images"]:
        im["id"] = remap_img[im["id"]]
    original_labels = [a["category_id"] for a in coco["annotations"]]
    for a in coco["annotations"]:
        a["category_id"] = remap_cat[a["category_id"]]
        a["image_id"] = remap_img[a["image_id"]]
    path.write_text(json.dumps(coco))
    ds = _dataset(path)
    assert ds.class_names == ["tank", "ship"]
    swapped = {1: 2, 2: 1}
    labels = [label for i in range(len(ds)) for label in ds[i][1]["labels"].tolist()]
    assert labels == [swapped[c] for c in original_labels]  # image order = file order, not id order
    assert [ds[i][1]["image_id"] for i in range(len(ds))] == [1, 2, 3]


def test_masks_match_polygons_and_areas(coco_gray) -> None:
    coco = json.loads(coco_gray.read_text())
    ds = _dataset(coco_gray)
    for i, info in enumerate(coco["images"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        image, t = ds[i]
        for a, mask, box in zip(anns, t["masks"].numpy(), t["boxes"].numpy()):
            area = int(mask.sum())
            assert abs(area - a["area"]) <= max(4.0, 0.04 * a["area"]), (i, a["id"], area, a["area"])
            x, y, w, h = a["bbox"]
            assert np.allclose(box, [x, y, x + w, y + h], atol=1.0)  # box from the mask, ~ the polygon's
            assert float(image[0][mask.astype(bool)].mean()) > 0.7  # the mask covers the bright object
            assert float(image[0][~mask.astype(bool)].mean()) < 0.4


def test_multipolygon_instance_is_one_mask_with_two_parts(coco_gray) -> None:
    coco = json.loads(coco_gray.read_text())
    multi = [k for k, a in enumerate(coco["annotations"]) if len(a["segmentation"]) == 2]
    assert len(multi) == 1 and coco["annotations"][multi[0]]["image_id"] == 0
    _, t = _dataset(coco_gray)[0]
    image0_ids = [a["id"] for a in coco["annotations"] if a["image_id"] == 0]
    k = image0_ids.index(coco["annotations"][multi[0]]["id"])
    mask = t["masks"][k].numpy().astype(bool)
    h, w = mask.shape
    left = object_mask({"kind": "rect", "box": (h - 14, 4, h - 4, 14)}, h, w)
    right = object_mask({"kind": "rect", "box": (h - 14, 17, h - 4, 30)}, h, w)
    assert np.array_equal(mask, left | right)  # exactly the two rectangles, gap columns 14..16 empty
    assert not mask[:, 14:17].any()
    assert t["boxes"][k].tolist() == [4.0, h - 14.0, 30.0, h - 4.0]  # one box around both parts


def test_empty_image_gives_zero_length_targets(coco_gray) -> None:
    ds = _dataset(coco_gray)
    image, t = ds[len(ds) - 1]  # the fixture's last image has no objects
    assert image.shape == (1, 96, 128)
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == torch.float32
    assert t["labels"].shape == (0,) and t["labels"].dtype == torch.int64
    assert t["masks"].shape == (0, 96, 128) and t["masks"].dtype == torch.uint8
    # also through the training transforms (the empty-mask path of every transform)
    ds_aug = _dataset(coco_gray, transforms=training_transforms(crop_size=64))
    image, t = ds_aug[len(ds) - 1]
    assert t["masks"].shape == (0, *image.shape[1:]) and t["boxes"].shape == (0, 4)


def test_polygon_helpers() -> None:
    mask = polygons_to_mask([[2, 1, 6, 1, 6, 4, 2, 4], [0, 0, 1]], 8, 10)  # a too-short part is ignored
    assert mask.shape == (8, 10) and mask.sum() == 12 and mask[1:4, 2:6].all()
    assert polygons_to_mask([], 5, 5).sum() == 0
    masks = np.zeros((2, 8, 10), np.uint8)
    masks[0, 1:4, 2:6] = 1
    np.testing.assert_array_equal(masks_to_boxes(masks), [[2, 1, 6, 4], [0, 0, 0, 0]])
    assert masks_to_boxes(np.zeros((0, 8, 10), np.uint8)).shape == (0, 4)


def test_band_selection_geotiff(tmp_path) -> None:
    path = write_coco_dataset(tmp_path / "ms", n_images=2, bands=4, dtype="uint16")
    norm = Normalisation(scale=1 / 65535, mean=(0.0,), std=(1.0,))
    full, _ = _dataset(path, normalisation=norm)[0]
    sel, target = _dataset(path, normalisation=norm, bands=[2, 4])[0]
    assert full.shape == (4, 96, 128) and sel.shape == (2, 96, 128)
    assert torch.equal(sel[0], full[1]) and torch.equal(sel[1], full[3])
    assert not torch.equal(full[1], full[3])  # distinct bands, so the selection is really checked
    assert target["masks"].shape[1:] == (96, 128)
    with pytest.raises(UserError, match="has 4 bands"):
        _dataset(path, normalisation=norm, bands=[5])[0]


def test_band_selection_png(coco_rgb) -> None:
    full, _ = _dataset(coco_rgb)[0]
    sel, _ = _dataset(coco_rgb, bands=[3])[0]
    assert sel.shape == (1, 96, 128) and torch.equal(sel[0], full[2])
    for bad in ([4], [0]):
        with pytest.raises(UserError, match="has 3 bands"):
            _dataset(coco_rgb, bands=bad)[0]


def test_missing_files_are_user_errors(tmp_path, coco_gray) -> None:
    with pytest.raises(UserError, match="not found"):
        CocoInstanceDataset(tmp_path / "none.json", tmp_path, IDENTITY)
    with pytest.raises(UserError, match="images folder"):
        CocoInstanceDataset(coco_gray, tmp_path / "nowhere", IDENTITY)
    (coco_gray.parent / "img_001.png").unlink()
    with pytest.raises(UserError, match="img_001.png"):
        _dataset(coco_gray)[1]


# ----------------------------------------------------------------------------------------- transforms


def _bright_square_sample(h: int = 48, w: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """2-band image, dark except an asymmetric L-shaped bright object; its mask is the object."""
    image = np.zeros((2, h, w), np.float32)
    masks = np.zeros((1, h, w), np.uint8)
    masks[0, 5:15, 8:12] = 1
    masks[0, 12:15, 8:25] = 1
    image[:, masks[0].astype(bool)] = 1.0
    image[1] *= 0.5
    return image, {"masks": masks, "labels": np.array([1])}


def _assert_aligned(image: np.ndarray, target: dict[str, np.ndarray], n_pixels: int | None = 79) -> None:
    m = target["masks"][0].astype(bool)
    assert image.shape[1:] == m.shape
    if n_pixels is not None:
        assert m.sum() == n_pixels  # flips/rotations keep every pixel
    assert (image[0][m] > 0.5).all() and (image[0][~m] < 0.5).all()
    assert np.allclose(image[1], image[0] * 0.5)  # both bands moved together


def test_flip_keeps_alignment_and_moves_object() -> None:
    sample = _bright_square_sample()
    image, target = RandomFlip(p=1.0, rng=np.random.default_rng(0))(sample)
    _assert_aligned(image, target)
    rows, cols = np.nonzero(target["masks"][0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (48 - 15, 48 - 6, 64 - 25, 64 - 9)
    same_image, same_target = RandomFlip(p=0.0)(sample)
    assert np.array_equal(same_target["masks"], sample[1]["masks"]) and np.array_equal(same_image, sample[0])


def test_rot90_keeps_alignment_for_every_k() -> None:
    sample = _bright_square_sample()
    seen_shapes, seen_masks = set(), set()
    for seed in range(12):
        image, target = RandomRot90(rng=np.random.default_rng(seed))(sample)
        _assert_aligned(image, target)
        seen_shapes.add(image.shape)
        seen_masks.add(target["masks"].tobytes())
    assert seen_shapes == {(2, 48, 64), (2, 64, 48)}
    assert len(seen_masks) == 4  # all four rotations happened and differ


def test_scale_jitter_keeps_alignment() -> None:
    sample = _bright_square_sample()
    image, target = ScaleJitter(1.5, 1.5, rng=np.random.default_rng(0))(sample)
    assert image.shape == (2, 72, 96) and target["masks"].shape == (1, 72, 96)
    m = target["masks"][0].astype(bool)
    assert abs(int(m.sum()) - 79 * 1.5 ** 2) < 30
    assert image[0][m].mean() > 0.7 and image[0][~m].mean() < 0.05
    small, small_t = ScaleJitter(0.5, 0.5, rng=np.random.default_rng(0))(sample)
    assert small.shape == (2, 24, 32) and small_t["masks"].shape == (1, 24, 32)


def test_random_crop_keeps_alignment() -> None:
    image, target = _bright_square_sample()
    crop_seen = set()
    for seed in range(6):
        ci, ct = RandomCrop(32, rng=np.random.default_rng(seed))((image, target))
        assert ci.shape == (2, 32, 32) and ct["masks"].shape == (1, 32, 32)
        if ct["masks"].any():
            _assert_aligned(ci, ct, n_pixels=None)
        crop_seen.add(ci.tobytes())
    assert len(crop_seen) > 1  # the position is random
    same = RandomCrop(128)((image, target))
    assert same[0] is image  # smaller images are left alone


def test_dataset_boxes_are_recomputed_from_transformed_masks(coco_gray) -> None:
    rng = np.random.default_rng(0)
    augment = Compose([RandomFlip(rng=rng), RandomRot90(rng=rng), ScaleJitter(0.9, 1.1, rng=rng),
                       RandomCrop(64, rng=rng)])
    ds = _dataset(coco_gray, transforms=augment)
    moved = 0
    plain = _dataset(coco_gray)
    for _ in range(3):
        for i in range(len(ds) - 1):
            image, t = ds[i]
            assert image.shape[1] <= 64 and image.shape[2] <= 64
            masks = t["masks"].numpy()
            assert len(masks) == len(t["labels"]) == len(t["boxes"])
            assert all(m.any() for m in masks)  # instances cropped away are dropped
            np.testing.assert_array_equal(t["boxes"].numpy(), masks_to_boxes(masks))
            for m in masks.astype(bool):  # masks still sit on bright pixels after all transforms
                if m.sum() >= 20:  # (slivers at the crop edge are mostly blurred boundary)
                    assert float(image[0][m].mean()) > 0.6
                assert float(image[0][~masks.any(0).astype(bool)].mean()) < 0.3
            moved += not torch.equal(t["boxes"], plain[i][1]["boxes"])
    assert moved > 0


# ---------------------------------------------------------------------------------------------- split


def _split(path, out, seed, val_fraction=0.3):
    train, val = split_coco(path, out, val_fraction=val_fraction, seed=seed)
    return json.loads(train.read_text()), json.loads(val.read_text())


def test_split_is_seeded_disjoint_and_complete(tmp_path) -> None:
    path = write_coco_dataset(tmp_path / "c", n_images=10, size=(48, 48))
    coco = json.loads(path.read_text())
    train, val = _split(path, tmp_path / "s0", seed=0)
    train_ids = {im["id"] for im in train["images"]}
    val_ids = {im["id"] for im in val["images"]}
    assert len(val_ids) == 3 and len(train_ids) == 7
    assert not train_ids & val_ids and train_ids | val_ids == {im["id"] for im in coco["images"]}
    for subset, ids in ((train, train_ids), (val, val_ids)):
        assert all(a["image_id"] in ids for a in subset["annotations"])
        assert subset["categories"] == coco["categories"]
    assert sorted(a["id"] for a in train["annotations"] + val["annotations"]) == [
        a["id"] for a in coco["annotations"]]
    assert val["info"]["seed"] == 0 and val["info"]["split"] == "val"

    assert _split(path, tmp_path / "s0b", seed=0) == (train, val)
    other = _split(path, tmp_path / "s1", seed=1)
    assert {im["id"] for im in other[1]["images"]} != val_ids
    assert not list((tmp_path / "s0").glob("*.tmp"))


def test_split_rejects_bad_fraction(coco_gray, tmp_path) -> None:
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UserError, match="val-fraction"):
            split_coco(coco_gray, tmp_path / "s", val_fraction=bad)
