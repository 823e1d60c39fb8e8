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

# Version 2, measured on SmolLM2-135M-Instruct writing for itself (docs/stages/synth.md, "The self-writer"):
# the first prompt asked for "two to four plain sentences" and headed the paths "Knowledge facts:", and
# a 135M writer ran past the length cap, printed the facts back and looped. A short reason is asked for
# at the end of the user turn, where a small model looks last, the facts are hints to put in its own
# words, "explain why X is correct" is not said (it made the writer answer "The correct answer is X."),
# and one worked example comes first (EXAMPLE).
SYSTEM = (
    "You explain quiz answers. Given a question and its correct answer, write one or two short sentences "
    "giving the reason or the fact that makes the answer correct. Do not just restate the answer, do not "
    "repeat the question, do not list facts, and never use option letters."
)
KI_HINT = "Facts that may help (from a knowledge graph; use them in your own words):"

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


# One worked example before the row (a one-shot prompt): a 135M writer copies the shape of an answer far
# more reliably than it follows a description of one. Its facts are WordNet-style paths, like the KG's.
EXAMPLE = {"question": "Which tool is used to measure the mass of an object?", "gold_text": "a balance",
           "path_texts": ["balance hypernym scale; scale hypernym measuring instrument",
                          "mass derivationally related weigh; weigh derivationally related balance"]}
EXAMPLE_RATIONALE = ("A balance compares the object with known masses, so it weighs the object directly; a "
                     "ruler or a thermometer measures length or temperature instead.")


def _user_turn(row: dict[str, Any], ki: bool, max_paths: int) -> str:
    answer = row["gold_text"].strip()
    user = f"Question: {row['question'].strip()}\nCorrect answer: {answer}\n"
    if ki:
        lines = "\n".join(f"- {fact}" for fact in facts(row, max_paths))
        user = f"{user}{KI_HINT}\n{lines}\n"
    return user + f'Why is "{answer}" correct? Give the reason in one or two sentences.'


def build_messages(row: dict[str, Any], ki: bool, max_paths: int = 4) -> list[dict[str, str]]:
    """Chat messages of the KI prompt (ki=True) or the w/o-KI prompt (ki=False) for one row: the system
    turn, the worked example (with facts only in the KI prompt), then the row."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": _user_turn(EXAMPLE, ki, max_paths)},
            {"role": "assistant", "content": EXAMPLE_RATIONALE},
            {"role": "user", "content": _user_turn(row, ki, max_paths)}]


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


# Why a rationale is not usable, in the order they are checked (the manifest counts each).
DEGENERATE_KINDS = ("empty", "too short", "repeated", "repeats the prompt", "repeats the question", "cut off",
                    "option letter", "no answer", "answer only")
# "The correct answer is X." says the answer again and nothing of why: as a KA target it is the answer-told
# teacher the w/o-KI arm must not be. What is left after the answer's words and this phrase must say something.
_ANSWER_PHRASE = re.compile(r"\b(?:so |thus |therefore )?(?:the |this )?(?:correct |right |best )?answer(?: to (?:this|the) question)?"
                            r"(?: is| would be)?\b|\bis (?:the )?correct\b|\bcorrect\b", re.I)
MIN_OWN_WORDS = 4
MIN_WORDS = 6  # fewer words explain nothing ("Dry palms." is the answer again, not a rationale)
# The prompt's own scaffolding: a writer that prints it back is continuing the prompt, not answering it.
_SCAFFOLD = re.compile(r"(?:^|\n)\s*(?:Question|Correct answer|Knowledge facts|Facts that may help)\b[^\n]*:", re.I)
_STOP = frozenset("a an the of to in on at by for with and or is are was were be it its this that as from".split())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _stem(word: str) -> str:
    """A crude stem, enough to see "evaporates" in "evaporation": the first five letters of a long word."""
    return word[:5] if len(word) > 5 else word


def mentions(text: str, option: str) -> bool:
    """Whether `text` names `option`: its whole text, or at least half of its content words (stemmed)."""
    norm = " ".join(_words(text))
    option_words = _words(option)
    if not option_words:
        return False
    if re.search(rf"\b{re.escape(' '.join(option_words))}\b", norm):
        return True
    content = [_stem(w) for w in option_words if w not in _STOP] or [_stem(w) for w in option_words]
    have = {_stem(w) for w in _words(text)}
    return sum(w in have for w in content) * 2 >= len(content)


def repeats_question(text: str, question: str) -> bool:
    """The rationale is (mostly) the question again: 80% of its word 3-grams are the question's, or it
    holds the whole question and adds fewer than MIN_WORDS words of its own."""
    words, asked = _words(text), _words(question)
    if len(asked) < 4:
        return False
    if " ".join(asked) in " ".join(words) and len(words) - len(asked) < MIN_WORDS:
        return True
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    source = {tuple(asked[i:i + 3]) for i in range(len(asked) - 2)}
    return bool(grams) and sum(g in source for g in grams) >= 0.8 * len(grams)


def check_rationale(text: str | None, finish_reason: str | None, choices: list[str] | None,
                    min_chars: int = 12, llm: bool = True, *, question: str | None = None,
                    gold: str | None = None) -> Verdict:
    """Clean a generated rationale and say whether it is degenerate, and why (DEGENERATE_KINDS): empty,
    too short, looping, the prompt or the question printed back, cut off, an option letter left in, or
    no mention of any answer option (the gold included), i.e. it does not lead to an answer at all.

    `llm=False` (the template writer) skips the checks that catch a model misbehaving (repetition,
    echoes, length, the answer's mention): verbalised paths that share a prefix repeat phrases by
    construction, and a path names KG labels, not the option's words."""
    text = strip_option_letters((text or "").strip(), choices)
    text = re.sub(r"^(?:Rationale|Explanation)\s*:\s*", "", text, flags=re.I).strip()
    if len(text) < min_chars:
        return Verdict(text, "empty")
    if llm and len(_words(text)) < MIN_WORDS:
        return Verdict(text, "too short")
    if llm and _repeats(text):
        return Verdict(text, "repeated")
    if llm and _SCAFFOLD.search(text):
        return Verdict(text, "repeats the prompt")
    if llm and question and repeats_question(text, question):
        return Verdict(text, "repeats the question")
    if finish_reason == "length" and not re.search(r"[.!?][\"')\]]*$", text):
        # Cut at the length cap: keep the sentences it finished, when they are a rationale on their own.
        ends = list(re.finditer(r"[.!?][\"')\]]*(?=\s)", text))
        kept = text[:ends[-1].end()].strip() if ends else ""
        if not llm or len(_words(kept)) < MIN_WORDS:
            return Verdict(text, "cut off")
        text = kept
    if contains_option_letter(text, len(choices or [])):
        return Verdict(text, "option letter")
    options = [o for o in [*(choices or []), gold or ""] if o and o.strip()]
    if llm and options and not any(mentions(text, o) for o in options):
        return Verdict(text, "no answer")
    if llm and gold and answer_only(text, gold):
        return Verdict(text, "answer only")
    return Verdict(text, None)


def answer_only(text: str, gold: str) -> bool:
    """The rationale is the answer restated ("The correct answer is X."): fewer than MIN_OWN_WORDS words
    remain once the answer's words and the answer phrase are taken out."""
    rest = _ANSWER_PHRASE.sub(" ", text)
    answer = {_stem(w) for w in _words(gold)}
    own = [w for w in _words(rest) if _stem(w) not in answer and w not in _STOP]
    return len(own) < MIN_OWN_WORDS
