"""ModelSpec serialisation; self-describing checkpoints: weights_only loading, clear errors, atomic save."""

import json
import os

import pytest
import torch
from torch import nn

import engine.checkpoint as checkpoint_module
from engine.checkpoint import FORMAT, Checkpoint, load_checkpoint, save_checkpoint
from engine.errors import UserError
from engine.spec import DEFAULT_COLOURS, ClassInfo, ModelSpec, Normalisation, classes_from_names


def _spec() -> ModelSpec:
    return ModelSpec(
        name="ships-s1",
        architecture="mask_rcnn",
        config={"backbone": "resnet18", "anchor_sizes": [8, 16, 32], "fpn_channels": 32},
        classes=(ClassInfo(1, "ship", "#112233"), ClassInfo(2, "tank", "#445566")),
        bands=2,
        band_names=("VV", "VH"),
        normalisation=Normalisation(scale=1 / 65535, mean=(0.4, 0.3), std=(0.2, 0.1), sar="db", db_min=-25.0),
        gsd_m=10.0,
        tile_size=256,
        overlap=64,
        score_threshold=0.3,
        mask_threshold=0.6,
        description="test spec",
    )


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)  # has an int64 buffer (num_batches_tracked)


# ---------------------------------------------------------------------------------------------- spec


def test_spec_round_trips_through_json() -> None:
    spec = _spec()
    d = spec.to_dict()
    assert d["spec_version"] == 1
    back = ModelSpec.from_dict(json.loads(json.dumps(d)))  # tuples become lists in JSON
    assert back == spec
    assert isinstance(back.classes[0], ClassInfo) and isinstance(back.normalisation, Normalisation)
    assert back.normalisation.mean == (0.4, 0.3) and back.band_names == ("VV", "VH")


def test_spec_from_dict_rejects_unknown_fields() -> None:
    d = _spec().to_dict()
    d["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        ModelSpec.from_dict(d)


def test_classes_from_names_and_lookup() -> None:
    classes = classes_from_names(["ship", "tank", "oil"])
    assert [c.id for c in classes] == [1, 2, 3]
    assert [c.colour for c in classes] == list(DEFAULT_COLOURS[:3])
    spec = ModelSpec(name="x", architecture="mask_rcnn", classes=classes)
    assert spec.num_classes == 3
    assert spec.class_name(2) == "tank" and spec.class_name(9) == "class_9"
    assert spec.with_updates(bands=3).bands == 3 and spec.bands == 1


# ---------------------------------------------------------------------------------------- checkpoint


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = _Tiny()
    model.bn.running_mean.uniform_()
    provenance = {"epochs_done": 3, "torch": str(torch.__version__)}
    ckpt = Checkpoint(_spec(), model.state_dict(), provenance=provenance,
                      metrics={"val": {"segm": {"AP": 41.5}}}, training_state={"epoch": 3, "iteration": 30})
    path = save_checkpoint(ckpt, tmp_path / "sub" / "model.pt")
    assert path == tmp_path / "sub" / "model.pt" and path.is_file()

    raw = torch.load(path, weights_only=True)  # a plain dict any torch can read safely
    assert raw["format"] == FORMAT and raw["format_version"] == 1

    loaded = load_checkpoint(path)
    assert loaded.spec == ckpt.spec
    assert loaded.provenance == {"epochs_done": 3, "torch": str(torch.__version__)}
    assert loaded.metrics == {"val": {"segm": {"AP": 41.5}}}
    assert loaded.training_state == {"epoch": 3, "iteration": 30}
    state = model.state_dict()
    assert set(loaded.state_dict) == set(state)
    for k, v in state.items():
        assert loaded.state_dict[k].dtype == v.dtype
        assert torch.equal(loaded.state_dict[k], v), k
    fresh = _Tiny()
    fresh.load_state_dict(loaded.state_dict)
    assert torch.equal(fresh.conv.weight, model.conv.weight)


def test_checkpoint_half_stores_floats_as_fp16(tmp_path) -> None:
    model = _Tiny()
    half = save_checkpoint(Checkpoint(_spec(), model.state_dict()), tmp_path / "half.pt", half=True)
    loaded = load_checkpoint(half)
    assert loaded.state_dict["conv.weight"].dtype == torch.float16
    assert loaded.state_dict["bn.num_batches_tracked"].dtype == torch.int64  # non-floats untouched
    assert torch.allclose(loaded.state_dict["conv.weight"].float(), model.conv.weight, atol=1e-3)
    assert loaded.training_state is None
    # the float payload dominates: the fp16 file is clearly smaller
    big = _Tiny()
    big.conv = nn.Conv2d(2, 64, 7)
    full = save_checkpoint(Checkpoint(_spec(), big.state_dict()), tmp_path / "full.pt")
    half = save_checkpoint(Checkpoint(_spec(), big.state_dict()), tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size


def _assert_user_error_names(path, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message and "\x1b" not in message  # one clean line for the CLI
    return message


def test_missing_checkpoint(tmp_path) -> None:
    _assert_user_error_names(tmp_path / "nope.pt", "not found")


def test_corrupt_checkpoint_random_bytes(tmp_path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(4096))
    _assert_user_error_names(path, "not a readable rsseg checkpoint")


def test_truncated_checkpoint(tmp_path) -> None:
    good = save_checkpoint(Checkpoint(_spec(), _Tiny().state_dict()), tmp_path / "good.pt")
    path = tmp_path / "truncated.pt"
    path.write_bytes(good.read_bytes()[:200])
    _assert_user_error_names(path, "not a readable rsseg checkpoint")


def test_foreign_checkpoint_plain_state_dict(tmp_path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(_Tiny().state_dict(), path)
    _assert_user_error_names(path, "foreign checkpoint")


class _Evil:
    """Unpickling this runs os.mkdir(marker): proof that a full (unsafe) unpickle happened."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_custom_object_is_refused_without_running_it(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    marker = tmp_path / "code_ran"
    payload = {"format": FORMAT, "format_version": 1, "spec": _spec().to_dict(), "x": _Evil(str(marker))}
    torch.save(payload, path)
    message = _assert_user_error_names(path, "not a readable rsseg checkpoint")
    assert not marker.exists(), "load_checkpoint unpickled arbitrary code (weights_only not used)"
    assert "mkdir" in message  # the specific reason, not torch's generic preamble
    assert "Weights only load failed" not in message


def test_newer_format_and_bad_spec_are_user_errors(tmp_path) -> None:
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT, "format_version": 99, "spec": _spec().to_dict(), "state_dict": {}}, newer)
    _assert_user_error_names(newer, "newer")
    bad = tmp_path / "badspec.pt"
    torch.save({"format": FORMAT, "format_version": 1, "spec": {"name": "x"}, "state_dict": {}}, bad)
    _assert_user_error_names(bad, "invalid model spec")


def test_save_is_atomic_and_replaces(tmp_path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(Checkpoint(_spec(), _Tiny().state_dict(), metrics={"v": 1}), path)
    save_checkpoint(Checkpoint(_spec(), _Tiny().state_dict(), metrics={"v": 2}), path)
    assert load_checkpoint(path).metrics == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp files left


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(Checkpoint(_spec(), _Tiny().state_dict(), metrics={"v": 1}), path)
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half-written")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(Checkpoint(_spec(), _Tiny().state_dict(), metrics={"v": 2}), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert load_checkpoint(path).metrics == {"v": 1}
