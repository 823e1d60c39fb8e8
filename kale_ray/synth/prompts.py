"""What the rationale writer is asked, and whether what it wrote is usable (docs/method.md, Stage 1, step 3).

The KI prompt gives the question, the gold answer and the verbalised KG paths; the w/o-KI prompt (the
ablation, and the fallback for rows without a path) gives the question and the answer only. The
writer never sees the options or their letters, and a letter that slips into a rationale anyway is
rewritten to the option's text: at training time the rationale sits next to a question whose options
may be shown in another order, so a letter would teach the wrong thing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

SYSTEM = (
    "You write short rationales for quiz answers. Given a question and its correct answer, explain in "
    "two to four plain sentences how the question leads to that answer. Refer to the answer by its words, "
    "never by an option letter, and do not repeat the question."
)
KI_HINT = "Use the knowledge facts below where they help; they come from a knowledge graph."

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def parse_paths(paths: str | None) -> list[list[list[Any]]]:
    """The paths column (a JSON list of paths of [head, relation, tail, backward] triples)."""
    if not paths:
        return []
    try:
        loaded = json.loads(paths)
    except json.JSONDecodeError:
        return []
    return loaded if isinstance(loaded, list) else []


def facts(row: dict[str, Any], max_paths: int) -> list[str]:
    """The verbalised paths shown to the writer: de-duplicated, in the paths stage's order."""
    seen: list[str] = []
    for text in row.get("path_texts") or []:
        text = (text or "").strip()
        if text and text not in seen:
            seen.append(text)
        if len(seen) >= max_paths:
            break
    return seen


def build_messages(row: dict[str, Any], ki: bool, max_paths: int = 4) -> list[dict[str, str]]:
    """Chat messages of the KI prompt (ki=True) or the w/o-KI prompt (ki=False) for one row."""
    user = f"Question: {row['question'].strip()}\nCorrect answer: {row['gold_text'].strip()}\n"
    if ki:
        lines = "\n".join(f"- {fact}" for fact in facts(row, max_paths))
        user = f"{user}{KI_HINT}\nKnowledge facts:\n{lines}\n"
    user += "Rationale:"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def plain_render(messages: list[dict[str, str]]) -> str:
    """The messages as text, for writers whose chat template is applied elsewhere (server, template)."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


# A letter that names an option: "option B", "answer is (C)", "Answer: D.", "(A)". A capital letter
# followed by a lowercase word ("the answer is A plant") is an article, not a letter.
_NAMED = re.compile(r"\b(?P<word>[Oo]ptions?|[Cc]hoices?|[Ll]etter)\s*:?\s*"
                    r"(?:\((?P<p>[A-Z])\)|(?P<letter>[A-Z])(?=[\s.,;:!?)]|$))")
_ANSWER = re.compile(r"\b(?P<word>[Aa]nswer(?:\s+is)?)\s*:?\s*"
                     r"(?:\((?P<p>[A-Z])\)|(?P<letter>[A-Z])(?=[\s.,;:!?)]|$)(?!\s+[a-z]))")
_PAREN = re.compile(r"\((?P<letter>[A-Z])\)")
_LEADING = re.compile(r"^\s*(?P<letter>[A-Z])[.):]\s+", re.M)


def _letter_patterns(n_choices: int) -> list[re.Pattern[str]]:
    return [_NAMED, _ANSWER, _PAREN, _LEADING] if n_choices > 0 else []


def strip_option_letters(text: str, choices: list[str] | None) -> str:
    """Rewrite every reference to an option letter into the option's text (or drop it if unknown)."""
    choices = list(choices or [])

    def option(letter: str) -> str | None:
        index = LETTERS.index(letter)
        return choices[index] if index < len(choices) else None

    def named(m: re.Match[str]) -> str:
        found = option(_letter(m))
        if found is None:
            return m.group(0)
        word = m.group("word")
        return f"{word} \"{found}\"" if word.lower().startswith("answer") else f"\"{found}\""

    def paren(m: re.Match[str]) -> str:
        found = option(m.group("letter"))
        return m.group(0) if found is None else f"(\"{found}\")"

    if not choices:
        return text
    text = _NAMED.sub(named, text)
    text = _ANSWER.sub(named, text)
    text = _PAREN.sub(paren, text)
    text = _LEADING.sub(lambda m: "" if option(m.group("letter")) else m.group(0), text)
    return text


def _letter(m: re.Match[str]) -> str:
    groups = m.groupdict()
    return groups.get("p") or groups["letter"]


def contains_option_letter(text: str, n_choices: int) -> bool:
    valid = set(LETTERS[:n_choices])
    return any(_letter(m) in valid for p in _letter_patterns(n_choices) for m in p.finditer(text))


@dataclass(frozen=True)
class Verdict:
    text: str
    degenerate: str | None  # None, or why the rationale is unusable


def _repeats(text: str, n: int = 6, limit: int = 3) -> bool:
    """A phrase of n words said `limit` times, or a long text of few distinct words: a looping writer."""
    words = re.findall(r"\w+", text.lower())
    if len(words) >= 20 and len(set(words)) / len(words) < 0.3:
        return True
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= limit:
            return True
    return False


def check_rationale(text: str | None, finish_reason: str | None, choices: list[str] | None,
                    min_chars: int = 12, llm: bool = True) -> Verdict:
    """Clean a generated rationale and say whether it is degenerate (empty, repeated, cut off).

    `llm=False` (the template writer) skips the repetition check: verbalised paths that share a prefix
    repeat phrases by construction, not because a model is looping."""
    text = strip_option_letters((text or "").strip(), choices)
    text = re.sub(r"^(?:Rationale|Explanation)\s*:\s*", "", text, flags=re.I).strip()
    if len(text) < min_chars:
        return Verdict(text, "empty")
    if llm and _repeats(text):
        return Verdict(text, "repeated")
    if finish_reason == "length" and not re.search(r"[.!?][\"')\]]*$", text):
        return Verdict(text, "cut off")
    if contains_option_letter(text, len(choices or [])):
        return Verdict(text, "option letter")
    return Verdict(text, None)
