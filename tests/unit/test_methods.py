"""The registry of methods and run identities: names, labels and directories, parsed back exactly."""

from typing import get_args

import pytest

from kale_ray.config import load_config
from kale_ray.methods import (
    METHODS,
    TRAINER_METHODS,
    MethodName,
    RunId,
    TrainedMethod,
    pipeline_runs,
    trained_runs,
)


def test_registry_matches_its_types():
    assert tuple(METHODS) == get_args(MethodName)
    assert tuple(n for n, m in METHODS.items() if m.trainer) == get_args(TrainedMethod)
    assert {m.trainer for m in METHODS.values() if m.trainer} == set(TRAINER_METHODS)
    assert all("/" not in m.label for m in METHODS.values())  # labels name result directories


def test_trained_runs_one_per_method_and_seed():
    cfg = load_config(overrides=["train.methods=[sft, ka-noki]", "synth.backend=hf"])
    runs = trained_runs(cfg.train.methods, cfg.train.seeds)
    assert [(r.method, r.dir_name, r.label, r.seed) for r in runs] == [
        ("sft", "sft", "SFT", None), ("ka-noki", "ka-noki", "KALE (no KI)", None)]
    seeded = load_config(overrides=["train.methods=[ka]", "train.seeds=[1, 2]"])
    runs = trained_runs(seeded.train.methods, seeded.train.seeds)
    assert [(r.dir_name, r.label, r.seed) for r in runs] == [("ka-s1", "KALE [seed 1]", 1), ("ka-s2", "KALE [seed 2]", 2)]
    assert [r.label for r in pipeline_runs(["ka"], [0], vanilla=True)] == ["Vanilla", "KALE [seed 0]"]


@pytest.mark.parametrize("seed", [None, 0, 7, -3, 12])
@pytest.mark.parametrize("method", list(METHODS))
def test_dir_name_and_label_parse_back(method, seed):
    run = RunId(method, seed)
    assert RunId.from_dir_name(run.dir_name) == run
    assert RunId.from_label(run.label) == run
    assert RunId.from_label(run.label, "hf") == RunId(method, seed, "hf")
    assert RunId.from_dict(RunId(method, seed, "hf").as_dict()) == RunId(method, seed, "hf")


@pytest.mark.parametrize("text", ["Vanilla (base)", "KALE [seed x]", "KALE [seed 01]", "KALE [seed 1] ", "GPT [seed 1]",
                                  "kale", ""])
def test_other_labels_name_no_run(text):
    assert RunId.from_label(text) is None


@pytest.mark.parametrize("name", ["ka-s", "ka-sx", "ka-s01", "kale", "ka-noki-2", "sft-s1-final"])
def test_other_directories_name_no_run(name):
    assert RunId.from_dir_name(name) is None


def test_rows_name_the_variant_and_group_seeds():
    assert RunId("ka", 2, "hf").row == "KALE · hf" == RunId("ka", None, "hf").row
    assert RunId("ce-rationale", 1).row == "KALE (no KA)"
    with pytest.raises(ValueError, match="unknown method"):
        RunId("kale")  # type: ignore[arg-type]


def test_train_methods_are_validated_by_the_config():
    from kale_ray.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.methods\.1"):
        load_config(overrides=["train.methods=[ka, vanilla]"])


def test_ka_arms_carry_their_own_train_ka_values():
    """Each ablation of the KA loss is one pipeline method: its runs train KALE with one train.ka value
    changed over the config's, and everything else (rows, steps, optimiser) as the config says."""
    cfg = load_config(overrides=["train.methods=[ka, ka-frozen, ka-forward, ka-ce]", "train.ka.temperature=2"])
    arms = {m: cfg.train.for_method(m) for m in cfg.train.methods}
    assert {m: (t.method, t.ka.target, t.ka.direction, t.ka.ce_weight) for m, t in arms.items()} == {
        "ka": ("ka", "live", "reverse", 0.0), "ka-frozen": ("ka", "frozen", "reverse", 0.0),
        "ka-forward": ("ka", "live", "forward", 0.0), "ka-ce": ("ka", "live", "reverse", 1.0)}
    assert all(t.ka.temperature == 2 for t in arms.values())  # the config's other KA values stay
    assert cfg.train.for_method("sft").method == "sft" and cfg.train.for_method("ce-rationale").method == "ce-rationale"
    assert cfg.train.ka.target == "live"  # for_method copies; the config itself is unchanged
    # Different arms hash differently, so each has its own run key and directory.
    assert len({t.model_dump_json() for t in arms.values()}) == 4
    # A worker validates its run's config again: every arm's must pass (ka-frozen is no twin of ka there).
    from kale_ray.config.train import TrainConfig

    for arm, tc in arms.items():
        assert TrainConfig.model_validate(tc.model_dump(mode="json")).methods == [arm]


def test_an_arm_the_config_already_is_is_refused():
    from kale_ray.config import ConfigError

    with pytest.raises(ConfigError, match="ka and ka-forward, which are the same run under train.ka.direction=forward"):
        load_config(overrides=["train.methods=[ka, ka-forward]", "train.ka.direction=forward"])
    # Alone, the arm is just KALE under another config: allowed.
    assert load_config(overrides=["train.methods=[ka-forward]", "train.ka.direction=forward"]).train.methods == ["ka-forward"]


def test_new_arm_directories_are_not_read_as_kale():
    assert RunId.from_dir_name("ka-frozen-s1") == RunId("ka-frozen", 1)
    assert RunId.from_dir_name("ka-ce") == RunId("ka-ce")
    assert RunId.from_label("KALE + CE [seed 2]") == RunId("ka-ce", 2)
    assert RunId.from_label("KALE (forward KL)") == RunId("ka-forward")
