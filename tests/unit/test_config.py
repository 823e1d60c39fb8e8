from pathlib import Path

import pytest

from kale_ray.config import (
    ConfigError,
    KaleConfig,
    apply_overrides,
    describe_keys,
    load_config,
    require_path,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_validate_and_match_method_md():
    cfg = load_config()
    assert (cfg.paths.anchors, cfg.paths.anchor_hops, cfg.paths.anchor_depth) == (4, 2, 3)
    assert (cfg.paths.max_paths, cfg.paths.max_hops) == (8, 4)
    assert cfg.train.direction == "reverse" and cfg.train.target == "live" and cfg.train.ce_weight == 0


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.1\n  workers: 3\nrun_name: x\n")
    cfg = load_config(path, ["train.lr=1e-4", "train.lora_targets=[q_proj]", "ray.address=auto"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.train.workers == 3 and cfg.run_name == "x"
    assert cfg.train.lora_targets == ["q_proj"] and cfg.ray.address == "auto"


@pytest.mark.parametrize("override, key, words", [
    ("train.nope=1", "train.nope", "unknown key"),
    ("train.lr=abc", "train.lr", "valid number"),
    ("train.zero_stage=7", "train.zero_stage", "less than or equal"),
    ("synth.backend=gpt", "synth.backend", "template"),
])
def test_errors_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert key in str(err.value) and words in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"run_name": "x"}, ["run_name.y=1"])


def test_missing_path_names_the_key(tmp_path):
    cfg = load_config(None, [f"kg.input={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match=r"kg\.input: path does not exist"):
        require_path(cfg, "kg.input")
    with pytest.raises(ConfigError, match=r"kg\.input: a path is required"):
        require_path(load_config(), "kg.input")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name):
    assert isinstance(load_config(REPO / "configs" / name), KaleConfig)


def test_every_key_is_documented():
    rows = describe_keys()
    assert len(rows) > 50
    undocumented = [key for key, _, _, desc in rows if not desc]
    assert undocumented == []


def test_section_hash_tracks_only_named_sections():
    a, b = load_config(), load_config(None, ["train.lr=0.5"])
    assert a.section_hash("data") == b.section_hash("data")
    assert a.section_hash("train") != b.section_hash("train")
