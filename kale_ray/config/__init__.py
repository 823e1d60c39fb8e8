"""One typed config tree for every stage: YAML files plus dotted command-line overrides.

Pydantic models with ``extra="forbid"`` so a typo is an error that names the key, not a silently
ignored setting, and a key that moved (`RENAMED`) is an error that names its new key. Each section
lives in its own module of this package (``kale_ray/config/<stage>.py``), so every layer can read the
config and the config imports no stage; this module assembles the tree, loads and overrides it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kale_ray.config.eval import EvalConfig
from kale_ray.config.kg import KGConfig, PathsConfig
from kale_ray.config.probe import ProbeConfig
from kale_ray.config.serve import ServeConfig
from kale_ray.config.shared import DataConfig, ModelConfig, RayConfig
from kale_ray.config.study import StudyConfig
from kale_ray.config.synth import SynthConfig
from kale_ray.config.train import TrainConfig


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the YAML or the override."""


def default_data_root() -> Path:
    """`KALE_DATA`, else `../shared/data` next to the repository (the layout of these machines)."""
    env = os.environ.get("KALE_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    for candidate in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data"


def default_workdir() -> str:
    """`KALE_WORKDIR` (a cluster's shared store, set on its nodes by cluster.yaml), else `artifacts`."""
    return os.environ.get("KALE_WORKDIR", "artifacts")


class KaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    run_name: str = Field("demo", description="Names the run; artifacts go to <workdir>/<run_name>/<stage>.")
    workdir: str = Field(default_factory=default_workdir, description=(
        "Root of every stage's artifact: a local or shared directory, or an object-store URI (s3://bucket/prefix, "
        "gs://...; stages then work on a node-local mirror and publish into the store, docs/cluster.md)."))
    data_root: Path = Field(default_factory=default_data_root,
                            description="Where registered benchmarks and KG sources live (env KALE_DATA).")
    seed: int = Field(0, description="Global seed; stages derive their own seeds from it.")
    ray: RayConfig = Field(default_factory=RayConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    kg: KGConfig = Field(default_factory=KGConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)

    @model_validator(mode="after")
    def _template_writes_from_paths_only(self) -> KaleConfig:
        """The template writer verbalises paths and nothing else: it is a labelled control, it cannot
        write the w/o-KI ablation (rationales from the Q&A pair only); that takes an LLM writer."""
        if self.synth.backend == "template" and ("ka-noki" in self.train.methods or not self.synth.ki):
            raise ValueError("the template writer verbalises KG paths only, so it cannot write KALE w/o KI "
                             "(train.methods ka-noki, synth.ki=false); use an LLM writer: synth.backend=hf, "
                             "vllm or openai")
        return self

    @field_validator("workdir", mode="before")
    @classmethod
    def _workdir_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @model_validator(mode="after")
    def _register_store(self) -> KaleConfig:
        """An object-store workdir is registered as soon as a config names it, before Ray starts, so
        the job's workers inherit the mirror and publish into the same store (kale_ray.storage)."""
        _ = self.workdir_path
        return self

    @property
    def workdir_path(self) -> Path:
        """The local directory stages use: `workdir` itself, or this node's mirror of the store."""
        from kale_ray.storage import local_root

        return local_root(self.workdir)

    def stage_dir(self, stage: str) -> Path:
        return self.workdir_path / self.run_name / stage

    @property
    def models_dir(self) -> Path:
        """Where hub models are downloaded once for every run and node of this workdir."""
        return self.workdir_path / "models"

    def section_hash(self, *sections: str) -> str:
        """A content hash of the named sections, so a stage can tell whether its artifact is current."""
        dumped = {name: _jsonable(getattr(self, name)) for name in sections}
        return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


# Keys that moved, old dotted key -> new one. Consulted only when validation fails at an old key (as an
# unknown key, or with the wrong type where the old key is now a section, e.g. `train.lora: false`), so
# a renamed key in a YAML file, an override or a study variant fails with the key to use instead.
_TRAIN_RENAMED = {
    "direction": "ka.direction", "target": "ka.target", "temperature": "ka.temperature",
    "ce_weight": "ka.ce_weight", "jsd_beta": "ka.jsd_beta", "share_prefix": "ka.share_prefix",
    "lora": "lora.enabled", "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
    "lora_targets": "lora.targets",
    "lr": "optim.lr", "weight_decay": "optim.weight_decay", "lr_schedule": "optim.schedule",
    "warmup_steps": "optim.warmup_steps", "max_grad_norm": "optim.max_grad_norm",
    "checkpoint_every": "checkpoint.every", "keep_checkpoints": "checkpoint.keep",
}
RENAMED: dict[str, str] = {f"train.{old}": f"train.{new}" for old, new in _TRAIN_RENAMED.items()}


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.optim.lr=1e-4` -> (["train", "optim", "lr"], 1e-4); the value is read as a YAML scalar or list."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {err}") from err
    return parts, value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        parts, value = parse_override(item)
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                key = ".".join(parts[: depth + 1])
                renamed = f" ({key} was renamed: use {RENAMED[key]})" if key in RENAMED else ""
                raise ConfigError(f"override {item!r}: {key} is not a section{renamed}")
            node = child
        node[parts[-1]] = value
    return tree


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if key in RENAMED:
            lines.append(f"  {key} was renamed: use {RENAMED[key]}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def build_config(tree: dict[str, Any], origin: str = "config") -> KaleConfig:
    try:
        return KaleConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> KaleConfig:
    """Defaults, then the YAML file (if any), then the dotted overrides, validated once at the end."""
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded
        origin = str(path)
    if overrides:
        tree = apply_overrides(tree, overrides)
        origin += " + overrides"
    return build_config(tree, origin)


def require_path(cfg: KaleConfig, key: str, kind: str = "any") -> Path:
    """The path at dotted `key`, or a ConfigError that names the key; kind is any|file|dir."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    if value is None:
        raise ConfigError(f"{key}: a path is required here")
    path = Path(value)
    ok = {"any": path.exists(), "file": path.is_file(), "dir": path.is_dir()}[kind]
    if not ok:
        what = {"any": "path", "file": "file", "dir": "directory"}[kind]
        raise ConfigError(f"{key}: {what} does not exist: {path}")
    return path


def describe_keys(model: type[BaseModel] = KaleConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every leaf: `kale-ray config keys` prints them."""
    rows: list[tuple[str, str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(describe_keys(ann, key + "."))
            continue
        default = field.get_default(call_default_factory=True)
        type_name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
        rows.append((key, type_name, json.dumps(_jsonable(default)), field.description or ""))
    return rows
