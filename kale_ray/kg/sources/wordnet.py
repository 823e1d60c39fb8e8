"""WordNet 3.0 database files (`data.noun`, `data.verb`, `data.adj`, `data.adv`).

Synsets are nodes keyed `<offset>-<pos>` (`02084071-n`; satellite adjectives use `a`, as pointers
do), their lemmas are the label and aliases, the gloss is the description, and every pointer is a
triple whose relation is the pointer type (hypernym, part_meronym, antonym, similar_to, ...).
Lexical pointers (between two lemmas) become synset-to-synset edges too.
"""

from __future__ import annotations

import re
from pathlib import Path

from kale_ray.kg.sources.base import KGBuilder

POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}

POINTERS = {
    "!": "antonym", "@": "hypernym", "@i": "instance_hypernym", "~": "hyponym", "~i": "instance_hyponym",
    "#m": "member_holonym", "#s": "substance_holonym", "#p": "part_holonym", "%m": "member_meronym",
    "%s": "substance_meronym", "%p": "part_meronym", "=": "attribute", "+": "derivationally_related",
    ";c": "domain_topic", "-c": "member_of_domain_topic", ";r": "domain_region",
    "-r": "member_of_domain_region", ";u": "domain_usage", "-u": "member_of_domain_usage",
    "*": "entailment", ">": "cause", "^": "also_see", "$": "verb_group", "&": "similar_to",
    "<": "participle", "\\": "pertainym",
}

_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")


def synset_key(offset: str, pos: str) -> str:
    return f"{offset}-{'a' if pos == 's' else pos}"


def _lemma(word: str) -> str:
    return _ADJ_MARKER.sub("", word).replace("_", " ")


def read_wordnet(root: Path) -> KGBuilder:
    root = Path(root)
    missing = [name for name in POS_FILES.values() if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: WordNet database files missing ({', '.join(missing)}); "
                                "install them with `apt-get install wordnet-base wordnet-sense-index`")
    builder = KGBuilder()
    for name in POS_FILES.values():
        path = root / name
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("  ") or not line.strip():
                    continue  # the licence header
                try:
                    _read_synset(builder, line)
                except (ValueError, IndexError) as err:
                    builder.log.skip(f"{path}:{lineno}", f"malformed synset line ({err.__class__.__name__})")
    return builder


def _read_synset(builder: KGBuilder, line: str) -> None:
    data, _, gloss = line.partition(" | ")
    fields = data.split()
    offset, pos = fields[0], fields[2]
    if pos not in "nvasr" or not offset.isdigit():
        raise ValueError("bad offset or part of speech")
    n_words = int(fields[3], 16)
    words = [_lemma(fields[4 + 2 * i]) for i in range(n_words)]
    at = 4 + 2 * n_words
    n_ptrs = int(fields[at])
    at += 1
    key = synset_key(offset, pos)
    builder.entity(key, label=words[0], aliases=words[1:], description=gloss.strip() or None)
    for _ in range(n_ptrs):
        symbol, target, target_pos = fields[at], fields[at + 1], fields[at + 2]
        at += 4
        relation = POINTERS.get(symbol)
        if relation is None:
            builder.log.skip(key, f"unknown pointer symbol {symbol!r}")
            continue
        builder.triple(key, relation, synset_key(target, target_pos))
