"""The methods kale-ray trains and compares, and the identity of one training run.

One registry, shared by the pipeline (what to train on which data), eval (the names of the models it
scores), the study and its report (grouping seeds, naming rows), so a method's name, data source and
display label are written once. Vanilla is the untrained base model: a method of the comparison, not
of the trainer. A run's directory name and label are derived here and parsed back here, so nothing
else reads seeds out of strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Iterable

# The trainer's own methods (`kale-ray train --method`): the loss and the views it needs.
TrainerMethod = Literal["ka", "sft", "ce-rationale"]
# The pipeline's trained methods (`train.methods`); `ka-noki` is KALE w/o KI (rationales written without
# KG paths), `ce-rationale` KALE w/o KA (cross-entropy on the with-rationale prompt); `ka-frozen`,
# `ka-forward` and `ka-ce` are KALE with one choice of the KA loss changed (their `ka` overrides).
TrainedMethod = Literal["sft", "ka", "ka-noki", "ce-rationale", "ka-frozen", "ka-forward", "ka-ce"]
MethodName = Literal["vanilla", "sft", "ka", "ka-noki", "ce-rationale", "ka-frozen", "ka-forward", "ka-ce"]
# Where a method's training rows come from: the data stage, or the rationales with / without KG paths.
Source = Literal["data", "synth", "synth-noki"]

TRAINER_METHODS: tuple[TrainerMethod, ...] = get_args(TrainerMethod)
VANILLA: MethodName = "vanilla"


@dataclass(frozen=True)
class Method:
    """One method of the comparison; `trainer` and `source` are None for Vanilla (never trained).

    `ka` holds the method's own `train.ka.*` values, applied over the config's `train.ka` for its runs
    only: an ablation of the KA loss is an arm of the same pipeline (same rows, same rationales, same
    steps) rather than a study variant of its own, which would split it from the arms it is compared with."""

    name: MethodName
    label: str  # the display name; it also names result directories, so no "/" ("w/o KI" is "no KI")
    trainer: TrainerMethod | None = None
    source: Source | None = None
    ka: dict[str, Any] = field(default_factory=dict)


# KALE + CE's weight: the plain CE and the KL summed with equal weight, the simplest mix (the paper prints
# no CE term, so there is no value to copy; train.ka.ce_weight sets KALE's own when it is not this arm).
KA_CE_WEIGHT = 1.0

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("vanilla", "Vanilla"),
    Method("sft", "SFT", "sft", "data"),
    Method("ka", "KALE", "ka", "synth"),
    Method("ka-noki", "KALE (no KI)", "ka", "synth-noki"),
    Method("ce-rationale", "KALE (no KA)", "ce-rationale", "synth"),
    Method("ka-frozen", "KALE (frozen target)", "ka", "synth", {"target": "frozen"}),
    Method("ka-forward", "KALE (forward KL)", "ka", "synth", {"direction": "forward"}),
    Method("ka-ce", "KALE + CE", "ka", "synth", {"ce_weight": KA_CE_WEIGHT}),
)}

_BY_LABEL = {m.label: m.name for m in METHODS.values()}
# Longest name first, so a directory name is matched by the method that spells all of it.
_BY_LENGTH = sorted(METHODS, key=len, reverse=True)
_SEED_OPEN, _SEED_CLOSE, _SEED_DIR = " [seed ", "]", "-s"


def label(method: str) -> str:
    """The display name of a registered method ("ka" -> "KALE")."""
    return METHODS[method].label


def ka_overrides(method: str) -> dict[str, Any]:
    """The `train.ka.*` values a registered method sets over the config's (empty for most)."""
    return dict(METHODS[method].ka)


def _seed(text: str) -> int | None:
    """The seed a name part spells, only when spelling it back gives the same text ("01" is not 1)."""
    try:
        seed = int(text)
    except ValueError:
        return None
    return seed if str(seed) == text else None


@dataclass(frozen=True)
class RunId:
    """One training run (or Vanilla) of a pipeline: which method, which seed of a `train.seeds` sweep
    (None: a single run, on the global seed) and which study variant ran it (None: a plain pipeline,
    or the variant a study page names without a suffix).

    Within its pipeline a run is `<workdir>/<run>/train/<dir_name>` and is scored under `label`; a
    study page groups its seeds into one row, `row`.
    """

    method: MethodName
    seed: int | None = None
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")

    @property
    def dir_name(self) -> str:
        """"ka", or "ka-s1" in a seed sweep."""
        return self.method if self.seed is None else f"{self.method}{_SEED_DIR}{self.seed}"

    @property
    def label(self) -> str:
        """"KALE", or "KALE [seed 1]" in a seed sweep: the model's name in eval's results."""
        name = METHODS[self.method].label
        return name if self.seed is None else f"{name}{_SEED_OPEN}{self.seed}{_SEED_CLOSE}"

    @property
    def row(self) -> str:
        """"KALE", or "KALE · hf" for another study variant: the study's row of every seed of it."""
        name = METHODS[self.method].label
        return name if self.variant is None else f"{name} · {self.variant}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunId:
        return cls(method=data["method"], seed=data.get("seed"), variant=data.get("variant"))

    @classmethod
    def from_dir_name(cls, name: str, variant: str | None = None) -> RunId | None:
        """The run a directory name names ("ka-noki-s2"), or None when it names none."""
        for method in _BY_LENGTH:
            if name == method:
                return cls(method, None, variant)
            if name.startswith(method + _SEED_DIR):
                seed = _seed(name[len(method) + len(_SEED_DIR):])
                if seed is not None:
                    return cls(method, seed, variant)
        return None

    @classmethod
    def from_label(cls, text: str, variant: str | None = None) -> RunId | None:
        """The run a label names ("KALE (no KI) [seed 2]"), or None for any other name."""
        name, seed = text, None
        if text.endswith(_SEED_CLOSE) and _SEED_OPEN in text:
            name, _, rest = text.rpartition(_SEED_OPEN)
            seed = _seed(rest[: -len(_SEED_CLOSE)])
            if seed is None:
                return None
        method = _BY_LABEL.get(name)
        return cls(method, seed, variant) if method is not None else None  # type: ignore[arg-type]


def trained_runs(methods: Iterable[str], seeds: Iterable[int] = (), variant: str | None = None) -> list[RunId]:
    """Every training run of a pipeline (`train.methods` x `train.seeds`): one per method, or one per
    method and seed when there are seeds."""
    seeds = list(seeds)
    return [RunId(m, s, variant) for m in methods for s in (seeds or [None])]  # type: ignore[arg-type]


def pipeline_runs(methods: Iterable[str], seeds: Iterable[int] = (), vanilla: bool = True,
                  variant: str | None = None) -> list[RunId]:
    """Every model a pipeline scores: Vanilla (when `eval.vanilla`) and its training runs."""
    return [*([RunId(VANILLA, None, variant)] if vanilla else []), *trained_runs(methods, seeds, variant)]
