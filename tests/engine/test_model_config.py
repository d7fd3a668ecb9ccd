"""Typed model configs: the one parser (types, choices, lists -> tuples, unknown keys), JSON round trips, the
presets of every architecture (and that they match the training scripts), resolve_config and its errors."""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Literal

import pytest

from engine.models import MODELS, SEMANTIC_ARCHITECTURES, architecture, resolve_config
from engine.models.backbones import TRUNKS, PlainTrunk, Trunk
from engine.models.config import SubModel, choices, parse_config, to_dict
from engine.zoo import shipped_models

SCRIPTS = Path(__file__).resolve().parents[2] / "research"  # the training schedules


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = 3


@dataclasses.dataclass(frozen=True)
class _Example:
    name: str = "x"
    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)
    nested_pairs: tuple[tuple[int, int], ...] = ((1, 2),)
    maybe: int | None = None
    inner: _Inner = _Inner()
    anything: typing.Any = None


def test_parser_converts_and_fills_defaults() -> None:
    cfg = parse_config(_Example, {"count": 4, "ratio": 2, "sizes": [5, 6, 7], "pair": [1, 2], "mode": "b",
                                  "nested_pairs": [[3, 4], [5, 6]], "maybe": 9, "inner": {"size": 8},
                                  "anything": {"k": [1]}})
    assert cfg == _Example(count=4, ratio=2.0, sizes=(5, 6, 7), pair=(1.0, 2.0), mode="b",
                           nested_pairs=((3, 4), (5, 6)), maybe=9, inner=_Inner(8), anything={"k": [1]})
    assert isinstance(cfg.ratio, float) and isinstance(cfg.pair[0], float)
    assert parse_config(_Example, {}) == parse_config(_Example, None) == _Example()
    plain = to_dict(cfg)
    assert plain["sizes"] == [5, 6, 7] and plain["nested_pairs"] == [[3, 4], [5, 6]] and plain["inner"] == {"size": 8}
    assert parse_config(_Example, json.loads(json.dumps(plain))) == cfg  # JSON round trip


@pytest.mark.parametrize(("key", "value", "message"), [
    ("count", "4", "expected int"),
    ("count", True, "expected int"),
    ("count", 1.5, "expected int"),
    ("flag", 1, "expected bool"),
    ("ratio", "0.5", "expected float"),
    ("name", 3, "expected str"),
    ("mode", "c", "'c' is not one of a, b"),
    ("sizes", 3, "expected a list of int"),
    ("sizes", [1, "2"], "expected int"),
    ("pair", [1, 2, 3], "expected a list of 2 float, got 3"),
    ("nested_pairs", [[1]], "expected a list of 2 int"),
    ("maybe", "none", "expected int"),
    ("inner", {"sise": 2}, r"unknown example.inner config key\(s\) 'sise'; valid keys: size"),
    ("inner", 5, "expected a JSON object"),
])
def test_parser_rejects_bad_values_naming_the_key(key: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_config(_Example, {key: value}, "example")
    text = str(info.value)
    assert "\n" not in text and (f"example config '{key}'" in text or f"example.{key} config" in text)


def test_unknown_keys_are_listed_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown example config key\(s\) 'cont', 'flg'; valid keys: name, flag, "):
        parse_config(_Example, {"cont": 1, "flg": True, "count": 2}, "example")
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_config(_Example, [("count", 1)], "example")


def test_trunk_choices_are_the_trunk_factory_names() -> None:
    assert set(choices(Trunk)) == set(TRUNKS)
    assert set(choices(PlainTrunk)) == set(TRUNKS) - {"hrnet_w18", "hrnet_w32", "hrnet_w40"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_defaults_and_presets_resolve_to_json_that_parses_back(name: str) -> None:
    arch = architecture(name)
    assert arch.config is not None and arch.summary and arch.task in ("instance", "semantic")
    assert dataclasses.is_dataclass(arch.config) and arch.config.__dataclass_params__.frozen
    defaults = resolve_config(name)
    assert set(defaults) == {f.name for f in dataclasses.fields(arch.config)}
    assert json.loads(json.dumps(defaults)) == defaults
    assert {"paper", "cpu"} <= set(arch.presets)
    for preset, partial in arch.presets.items():
        resolved = resolve_config(name, preset)
        assert json.loads(json.dumps(resolved)) == resolved
        assert resolve_config(name, None, resolved) == resolved  # a stored config rebuilds the same model
        for key, value in partial.items():  # the preset's keys win over the defaults (sub-models: see test_c2fnet)
            if not isinstance(getattr(arch.parse(), key), SubModel):
                assert resolved[key] == json.loads(json.dumps(value)), (preset, key)


def test_overrides_win_over_the_preset() -> None:
    resolved = resolve_config("mask_rcnn", "cpu", {"fpn_channels": 64, "backbone": "efficientnet_lite2"})
    assert (resolved["fpn_channels"], resolved["backbone"], resolved["frozen_blocks"]) == (64, "efficientnet_lite2", 3)
    assert resolve_config("mask_rcnn", None, {"fpn_channels": 64})["representation_size"] == 1024


def test_resolve_config_errors_name_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'yolo'; available: c2fnet, cascade_mask_rcnn, facenet"):
        resolve_config("yolo")
    with pytest.raises(ValueError, match="unknown preset 'gpu' for mask_rcnn; available: cpu, paper"):
        resolve_config("mask_rcnn", "gpu")
    with pytest.raises(ValueError, match=r"unknown farseg config key\(s\) 'los'; valid keys: backbone, "):
        resolve_config("farseg", "cpu", {"los": "ce"})
    with pytest.raises(ValueError, match="farseg config 'loss': 'dice' is not one of fa, ce, focal"):
        resolve_config("farseg", None, {"loss": "dice"})
    with pytest.raises(ValueError, match="no pretrained weights for 'hrnet_w18'"):
        resolve_config("hq_isnet", "cpu", {"backbone": "hrnet_w18"})  # the cpu preset asks for ImageNet weights
    with pytest.raises(ValueError, match="cascade stages disagree"):
        resolve_config("cascade_mask_rcnn", None, {"cascade_loss_weights": [1.0]})


def test_every_switch_rejects_an_unknown_value() -> None:
    for name, arch in MODELS.items():
        hints = typing.get_type_hints(arch.config)
        switches = [k for k, hint in hints.items() if typing.get_origin(hint) is Literal]
        assert switches, name
        for key in switches:
            with pytest.raises(ValueError, match=f"{name} config '{key}': 'bogus' is not one of "):
                resolve_config(name, None, {key: "bogus"})


def test_stored_configs_of_the_shipped_models_parse() -> None:
    for path in shipped_models().values():
        spec = json.loads(path.with_suffix(".json").read_text())["spec"]
        config = architecture(spec["architecture"]).parse(spec["config"])
        assert {k: v for k, v in to_dict(config).items() if k in spec["config"]} == spec["config"]


def test_semantic_architectures_derive_from_models() -> None:
    assert SEMANTIC_ARCHITECTURES == {"semantic_fpn", "farseg", "hi_resnet", "c2fnet"}


def _script_block(script: str, name: str) -> dict:
    """A bash variable holding JSON members in a training script (e.g. RCNN='"a": 1, ...') as a dict."""
    text = (SCRIPTS / script).read_text()
    start = text.index(f"{name}='") + len(name) + 2
    body = text[start:text.index("'\n", start)].replace("'$FROZEN'", "3")  # FROZEN's default
    return json.loads("{" + body + "}")


def test_cpu_presets_are_the_training_scripts_settings() -> None:
    rcnn, solo = _script_block("train_instance.sh", "RCNN"), _script_block("train_instance.sh", "SOLO")
    lite0 = {"backbone": "efficientnet_lite0", "pretrained": True}
    for name in ("mask_rcnn", "cascade_mask_rcnn", "hq_isnet"):
        preset = MODELS[name].presets["cpu"]
        assert {k: preset[k] for k in {**rcnn, **lite0}} == {**rcnn, **lite0}, name
    hq = resolve_config("hq_isnet", "cpu")
    assert (hq["neck"], hq["mask_flow"]) == ("hrfpn", "isnetv2")
    hrnet = resolve_config("hq_isnet", "cpu-hrnet")
    assert (hrnet["backbone"], hrnet["pretrained"], hrnet["frozen_blocks"]) == ("hrnet_w18", False, 0)
    slim = {k: v for k, v in rcnn.items() if k != "frozen_blocks"}
    assert {k: hrnet[k] for k in slim} == slim
    for name in ("solov2", "facenet"):
        preset = MODELS[name].presets["cpu"]
        assert {k: preset[k] for k in {**solo, **lite0}} == {**solo, **lite0}, name
    assert resolve_config("facenet", "cpu-nodcn")["dcn"] == "none"
    assert resolve_config("solov2", "cpu-dcn")["dcn"] == "kernel"
    for name in ("semantic_fpn", "farseg", "c2fnet"):
        assert "cpu" in MODELS[name].presets
    assert resolve_config("farseg", "cpu-ce")["loss"] == "ce"
    assert resolve_config("hi_resnet", "paper")["channels"] == [48, 96, 192]
