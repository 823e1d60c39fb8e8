"""Benchmark loaders: every source format into one Arrow schema.

A benchmark is named by a registered name resolved under the data root (`arc-easy`, `mmlu`,
`mmlu-anatomy`, `absr`, `bbh`, `bbh-date_understanding`, `metaqa-2hop`) or by a path to a file in one
of the formats. Row ids hash the row's content, so a split by id stays put when rows are added.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("benchmark", pa.string()),
    ("question", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("gold", pa.int32()),            # index into choices; -1 for generative items
    ("gold_text", pa.string()),
    ("answers", pa.list_(pa.string())),  # every accepted answer (MetaQA sets, BBH targets)
    ("topic", pa.string()),          # MetaQA's bracketed topic entity
    ("subject", pa.string()),        # MMLU subject, BBH task
    ("source", pa.string()),         # file the row came from
])


class BenchmarkError(ValueError):
    """A benchmark that cannot be found or a row that cannot be read under --strict."""


@dataclass
class LoadReport:
    """What a loader read and what it had to skip, with reasons, for the stage's manifest."""

    rows: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str, strict: bool) -> None:
        if strict:
            raise BenchmarkError(f"{where}: {reason}")
        self.skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    def merge(self, other: LoadReport) -> None:
        self.rows += other.rows
        self.skipped += other.skipped
        self.reasons.update(other.reasons)
        self.examples.extend(other.examples[: max(0, 20 - len(self.examples))])

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "skipped": self.skipped, "reasons": dict(self.reasons),
                "examples": self.examples}


def row_id(benchmark: str, question: str, choices: list[str]) -> str:
    digest = hashlib.sha1("\x1f".join([question, *choices]).encode()).hexdigest()[:12]
    return f"{benchmark}-{digest}"


def _row(benchmark: str, question: str, choices: list[str], gold: int, source: Path, *,
         answers: list[str] | None = None, topic: str | None = None, subject: str | None = None,
         gold_text: str | None = None) -> dict[str, Any]:
    if gold_text is None:
        gold_text = choices[gold] if 0 <= gold < len(choices) else (answers or [""])[0]
    return {"id": row_id(benchmark, question, choices), "benchmark": benchmark, "question": question,
            "choices": choices, "gold": gold, "gold_text": gold_text,
            "answers": answers if answers is not None else [gold_text], "topic": topic,
            "subject": subject, "source": str(source)}


def _json_lines(path: Path, report: LoadReport, strict: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                report.skip(f"{path}:{lineno}", f"invalid JSON ({err.msg})", strict)
                continue
            if not isinstance(obj, dict):
                report.skip(f"{path}:{lineno}", "not a JSON object", strict)
                continue
            yield lineno, obj


def read_nutcracker(path: Path, benchmark: str, report: LoadReport, strict: bool,
                    subject: str | None = None) -> Iterator[dict[str, Any]]:
    """`{"centerpiece", "options", "correct_options_idx"}` per line (ARC, CSQA, OBQA, MMLU)."""
    for lineno, obj in _json_lines(path, report, strict):
        where = f"{path}:{lineno}"
        question, options, gold = obj.get("centerpiece"), obj.get("options"), obj.get("correct_options_idx")
        if not isinstance(question, str) or not question.strip():
            report.skip(where, "missing question (centerpiece)", strict)
        elif not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            report.skip(where, "options must be a list of at least two strings", strict)
        elif not isinstance(gold, list) or len(gold) != 1 or not isinstance(gold[0], int) \
                or not 0 <= gold[0] < len(options):
            report.skip(where, "correct_options_idx must hold one valid option index", strict)
        else:
            yield _row(benchmark, question.strip(), [o.strip() for o in options], gold[0], path,
                       subject=subject)


_ABSR_OPT = re.compile(r"^([A-Z])[).:]\s*(.*)$", re.M)


def read_absr(path: Path, benchmark: str, report: LoadReport, strict: bool) -> Iterator[dict[str, Any]]:
    """`test_ppl.json`: id -> {"label: A": {"testing input": prompt ending "Answer: A"}, ..., "gold"}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BenchmarkError(f"{path}: invalid JSON ({err.msg})") from None
    for key, item in data.items():
        where = f"{path}#{key}"
        labels = sorted(k for k in item if isinstance(k, str) and k.startswith("label: ")) \
            if isinstance(item, dict) else []
        if not labels:
            report.skip(where, "no 'label: X' options", strict)
            continue
        block = _absr_last_block(str(item[labels[0]].get("testing input", "")))
        gold_letter = item.get("gold")
        if block is None:
            report.skip(where, "testing input has no Question/Options/Answer block", strict)
            continue
        question, options_text = block
        options = dict(_ABSR_OPT.findall(options_text))
        # A few items carry more labels than their prompt has options; the prompt's options rule.
        letters = [lab.split(": ", 1)[1] for lab in labels if lab.split(": ", 1)[1] in options]
        if len(letters) < 2 or gold_letter not in letters:
            report.skip(where, "options or gold label do not match the labels", strict)
            continue
        choices = [options[letter].strip() for letter in letters]
        yield _row(benchmark, question, choices, letters.index(gold_letter), path)


def _absr_last_block(text: str) -> tuple[str, str] | None:
    """The question being asked is the last `Question: ... Options: ... Answer:` block; some prompts
    carry a worked example (with its own Question and Options) before it."""
    body = text[: text.rfind("\nAnswer:")]
    start = body.rfind("Question:")
    if start < 0 or "\nOptions:\n" not in body[start:]:
        return None
    question, options = body[start + len("Question:"):].split("\nOptions:\n", 1)
    return question.strip(), options


_BBH_OPTS = re.compile(r"\nOptions:\n((?:\([A-Z]\) .*(?:\n|$))+)")


def read_bbh(path: Path, benchmark: str, report: LoadReport, strict: bool) -> Iterator[dict[str, Any]]:
    """BBH `{"examples": [{"input", "target"}]}`; items with `(A)`-style options become multiple choice."""
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BenchmarkError(f"{path}: not a BBH task file ({err})") from None
    subject = path.stem
    for index, ex in enumerate(examples):
        where = f"{path}#{index}"
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or "target" not in ex:
            report.skip(where, "example needs string 'input' and a 'target'", strict)
            continue
        text, target = ex["input"], str(ex["target"]).strip()
        opts = _BBH_OPTS.search(text)
        choices: list[str] = []
        gold = -1
        if opts:
            parsed = re.findall(r"^\(([A-Z])\) (.*)$", opts.group(1), re.M)
            letters = [f"({letter})" for letter, _ in parsed]
            if target in letters:
                choices, gold = [c.strip() for _, c in parsed], letters.index(target)
        yield _row(benchmark, text.strip(), choices, gold, path, answers=[target], subject=subject,
                   gold_text=target)


def read_metaqa(path: Path, benchmark: str, report: LoadReport, strict: bool) -> Iterator[dict[str, Any]]:
    """`question with [topic]<TAB>answer1|answer2`: open questions whose answers are KG entities."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            question, sep, answers = line.partition("\t")
            topic = re.search(r"\[([^\]]+)\]", question)
            if not sep or not answers.strip():
                report.skip(where, "expected 'question<TAB>answers'", strict)
            elif not topic:
                report.skip(where, "question has no [topic entity]", strict)
            else:
                answer_list = [a.strip() for a in answers.split("|") if a.strip()]
                row = _row(benchmark, question.strip(), [], -1, path, answers=answer_list,
                           topic=topic.group(1), gold_text=answer_list[0])
                # One question text can name different entities (two films called "Eden", with different
                # casts): the answer set is part of the row's identity, or one of them is lost as a duplicate.
                row["id"] = row_id(benchmark, row["question"], sorted(answer_list))
                yield row


def _gold_from(obj: dict[str, Any], choices: list[str]) -> int | None:
    for key in ("gold", "answer_index", "label", "answer"):
        value = obj.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) and 0 <= value < len(choices):
            return value
        if isinstance(value, str):
            if len(value) == 1 and value.upper() in LETTERS[: len(choices)]:
                return LETTERS.index(value.upper())
            if value in choices:
                return choices.index(value)
    return None


def read_user(path: Path, benchmark: str, report: LoadReport, strict: bool) -> Iterator[dict[str, Any]]:
    """A user's JSONL or Parquet: `question`, `choices`, and the gold as index, letter or option text."""
    if path.suffix == ".parquet":
        records: Iterator[tuple[int, dict[str, Any]]] = enumerate(pq.read_table(path).to_pylist(), 1)
    else:
        records = _json_lines(path, report, strict)
    for lineno, obj in records:
        where = f"{path}:{lineno}"
        question, choices = obj.get("question"), obj.get("choices", [])
        if not isinstance(question, str) or not question.strip():
            report.skip(where, "missing 'question'", strict)
            continue
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            report.skip(where, "'choices' must be a list of strings", strict)
            continue
        if choices:
            gold = _gold_from(obj, choices)
            if gold is None:
                report.skip(where, "no valid gold ('gold', 'answer_index', 'label' or 'answer')", strict)
                continue
            yield _row(benchmark, question.strip(), choices, gold, path, subject=obj.get("subject"))
        else:
            answers = obj.get("answers") or ([obj["answer"]] if isinstance(obj.get("answer"), str) else [])
            if not answers:
                report.skip(where, "open question needs 'answer' or 'answers'", strict)
                continue
            yield _row(benchmark, question.strip(), [], -1, path, answers=[str(a) for a in answers],
                       topic=obj.get("topic"), subject=obj.get("subject"))


Reader = Callable[[Path, str, LoadReport, bool], Iterator[dict[str, Any]]]


def resolve(name: str, data_root: Path, split: str = "test") -> list[tuple[Path, Reader, str | None]]:
    """Registered name or file path -> [(file, reader, subject)]. `split` is test|dev|all."""
    path = Path(name)
    if path.suffix in {".json", ".jsonl", ".parquet", ".txt"} and path.exists():
        return [(path, _reader_for_file(path), None)]
    root = Path(data_root)
    splits = ["dev", "test"] if split == "all" else [split]
    if name == "absr":
        return [(root / "absr" / "test_ppl.json", read_absr, None)]
    if name == "bbh" or name.startswith("bbh-"):
        files = sorted((root / "bbh").glob("*.json")) if name == "bbh" else [root / "bbh" / f"{name[4:]}.json"]
        return [(f, read_bbh, f.stem) for f in files]
    if m := re.fullmatch(r"metaqa-([123])hop", name):
        return [(root / "metaqa" / f"{m.group(1)}-hop" / "qa_dev.txt", read_metaqa, None)]
    bench = root / "benchmarks"
    if name == "mmlu":
        tasks = sorted(p.name for p in bench.glob("mmlu-*") if p.is_dir())
    else:
        tasks = [name]
    found = []
    for task in tasks:
        subject = task[5:] if task.startswith("mmlu-") else None
        for s in splits:
            found.append((bench / task / f"{s}.json", read_nutcracker, subject))
    return found


def _reader_for_file(path: Path) -> Reader:
    if path.name == "test_ppl.json":
        return read_absr
    if path.suffix == ".txt":
        return read_metaqa
    if path.suffix == ".json":
        head = path.open(encoding="utf-8").read(4096).lstrip()
        if head.startswith("{") and '"examples"' in head[:200]:
            return read_bbh
        if '"centerpiece"' in head:
            return read_nutcracker
    return read_user


def registered_names(data_root: Path) -> list[str]:
    root = Path(data_root)
    names = sorted(p.name for p in (root / "benchmarks").glob("*") if p.is_dir())
    return [*names, "mmlu", "absr", "bbh", "metaqa-1hop", "metaqa-2hop", "metaqa-3hop"]


def load_benchmark(name: str, data_root: Path, split: str = "test", strict: bool = False,
                   report: LoadReport | None = None) -> pa.Table:
    """Read a benchmark into `SCHEMA`. Duplicate rows (same question and options) are kept once."""
    report = report if report is not None else LoadReport()
    files = resolve(name, data_root, split)
    missing = [str(f) for f, _, _ in files if not f.is_file()]
    if not files or missing:
        known = ", ".join(registered_names(data_root))
        raise BenchmarkError(f"benchmark {name!r}: not found ({', '.join(missing) or 'no files'}); "
                             f"give a file path or one of: {known}")
    label = Path(name).stem if Path(name).suffix else name
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path, reader, subject in files:
        for row in (reader(path, label, report, strict) if reader is not read_nutcracker
                    else read_nutcracker(path, label, report, strict, subject)):
            if row["id"] in seen:
                report.skip(str(path), "duplicate of an earlier row", False)
                continue
            seen.add(row["id"])
            rows.append(row)
    report.rows = len(rows)
    return pa.Table.from_pylist(rows, schema=SCHEMA)
