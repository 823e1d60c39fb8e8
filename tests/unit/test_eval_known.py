"""known&incorrect probes built from KG path sentences or rationales of real ARC-Easy rows."""

from kale_ray.data.benchmarks import load_benchmark
from kale_ray.eval.known import PROBE_PREFIX, known_flags, probe_for, probe_texts


def test_probe_from_a_path_sentence_replaces_the_answer_with_each_distractor():
    row = {"id": "x", "choices": ["iron", "a dog", "water"], "gold": 1}
    true, false = probe_for(row, probe_texts({"path_texts": ["dog is a kind of canine"]}))
    assert true == "dog is a kind of canine"
    assert false == ["iron is a kind of canine", "water is a kind of canine"]


def test_rationale_is_used_when_there_is_no_path():
    row = {"id": "x", "choices": ["melting", "freezing"], "gold": 0}
    probe = probe_for(row, probe_texts({"path_texts": [], "rationale": "Heat is added. Ice is melting here."}))
    assert probe == ("Ice is melting here.", ["Ice is freezing here."])


def test_no_mention_or_no_choices_gives_no_probe():
    assert probe_for({"choices": ["a", "bird"], "gold": 1}, ["cats purr"]) is None
    assert probe_for({"choices": [], "gold": -1}, ["x"]) is None
    assert probe_texts(None) == []


class _FixedScorer:
    """Prefers statements that mention 'canine' (stands in for a model's log-likelihood)."""

    def __init__(self):
        self.seen = []

    def loglikelihood(self, pairs):
        self.seen.extend(pairs)
        return [0.0 if "canine" in s and "dog" in s else -5.0 for _, s in pairs]


def test_known_flags_on_real_rows(data_root):
    table = load_benchmark("arc-easy", data_root, "dev").slice(0, 3).to_pylist()
    dog = {"id": "dog", "choices": ["a cat", "a dog"], "gold": 1}
    probes = {"dog": {"path_texts": ["dog is a kind of canine"]},
              table[0]["id"]: {"path_texts": [f"{table[0]['choices'][table[0]['gold']]} is the answer."]}}
    scorer = _FixedScorer()
    flags = known_flags(scorer, [dog, table[0], table[1]], probes)
    assert flags[0] is True and flags[1] is False and flags[2] is None
    assert all(ctx == PROBE_PREFIX for ctx, _ in scorer.seen)
