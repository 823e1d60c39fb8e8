from pathlib import Path

import pytest

from kale_ray.config import (
    RENAMED,
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
    assert cfg.train.ka.direction == "reverse" and cfg.train.ka.target == "live" and cfg.train.ka.ce_weight == 0


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  optim:\n    lr: 0.1\n  workers: 3\nrun_name: x\n")
    cfg = load_config(path, ["train.optim.lr=1e-4", "train.lora.targets=[q_proj]", "ray.address=auto"])
    assert cfg.train.optim.lr == pytest.approx(1e-4)
    assert cfg.train.workers == 3 and cfg.run_name == "x"
    assert cfg.train.lora.targets == ["q_proj"] and cfg.ray.address == "auto"


@pytest.mark.parametrize("override, key, words", [
    ("train.nope=1", "train.nope", "unknown key"),
    ("train.optim.lr=abc", "train.optim.lr", "valid number"),
    ("train.zero_stage=7", "train.zero_stage", "less than or equal"),
    ("synth.backend=gpt", "synth.backend", "template"),
])
def test_errors_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert key in str(err.value) and words in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.optim.lr"])
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
    a, b = load_config(), load_config(None, ["train.optim.lr=0.5"])
    assert a.section_hash("data") == b.section_hash("data")
    assert a.section_hash("train") != b.section_hash("train")



def test_lora_targets_take_a_list_or_all_linear():
    assert load_config(None, ["train.lora.targets=all-linear"]).train.lora.targets == "all-linear"
    assert load_config(None, ["train.lora.targets=[q_proj, up_proj]"]).train.lora.targets == ["q_proj", "up_proj"]
    with pytest.raises(ConfigError, match="train.lora.targets"):
        load_config(None, ["train.lora.targets=all"])


# One case per shape of a renamed key: an old leaf that is gone (an unknown key) and an old leaf whose
# name is now a section (a wrong type), each from a dotted override and from a YAML file.
RENAMED_CASES = [
    ("train.lora_r=8", "train:\n  lora_r: 8\n", "train.lora_r was renamed: use train.lora.r"),
    ("train.lora=false", "train:\n  lora: false\n", "train.lora was renamed: use train.lora.enabled"),
    ("train.lr_schedule=constant", "train:\n  lr_schedule: constant\n",
     "train.lr_schedule was renamed: use train.optim.schedule"),
    ("train.direction=forward", "train:\n  direction: forward\n", "train.direction was renamed: use train.ka.direction"),
    ("train.checkpoint_every=5", "train:\n  checkpoint_every: 5\n",
     "train.checkpoint_every was renamed: use train.checkpoint.every"),
]


@pytest.mark.parametrize("override, yaml_text, message", RENAMED_CASES)
def test_renamed_keys_name_the_new_key(tmp_path, override, yaml_text, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    path = tmp_path / "old.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_every_renamed_key_points_at_a_key_that_exists():
    keys = {key for key, *_ in describe_keys()}
    assert set(RENAMED.values()) <= keys
    assert not set(RENAMED) & keys  # an old key that is still a leaf would never be reported


def test_a_renamed_key_in_a_study_variant_names_the_new_key(tmp_path):
    from kale_ray.study.variants import variant_config

    cfg = load_config(None, ["study.variants={fwd: [train.direction=forward]}"])
    with pytest.raises(ConfigError, match="study variant 'fwd'") as err:
        variant_config(cfg, "fwd")
    assert "train.direction was renamed: use train.ka.direction" in str(err.value)
    assert variant_config(load_config(None, ["study.variants={fwd: [train.ka.direction=forward]}"]),
                          "fwd").train.ka.direction == "forward"


def test_an_override_below_an_old_leaf_names_the_new_key(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  lora: true\n")
    with pytest.raises(ConfigError, match=r"train\.lora is not a section \(train\.lora was renamed: use train\.lora\.enabled\)"):
        load_config(path, ["train.lora.r=8"])
