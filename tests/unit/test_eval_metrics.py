"""Per-item metrics: lm-evaluation-harness's acc/acc_norm, exact match, and the echo log-prob reader."""

import pytest

from kale_ray.data.answers import exact_match, extract_answer
from kale_ray.eval.metrics import mc_scores
from kale_ray.eval.scorers import ScoringError, continuation_logprob


def test_acc_is_argmax_of_sum_and_acc_norm_divides_by_characters():
    # Summed: option 0 wins (-4 > -6); per character: option 1 wins (-6/12 = -0.5 > -4/2 = -2).
    scores = mc_scores([-4.0, -6.0], ["ab", "abcdefghijkl"], gold=1)
    assert (scores["pred"], scores["pred_norm"]) == (0, 1)
    assert (scores["acc"], scores["acc_norm"]) == (0.0, 1.0)


@pytest.mark.parametrize(("generated", "answers", "expected"), [
    (" False", ["False"], 1.0),
    ("\nTrue.\nbecause", ["True"], 1.0),
    ("I think the answer is (B).", ["(B)"], 1.0),
    (" B", ["(B)"], 1.0),
    ("(B) a hammer", ["(B)"], 1.0),
    ("(C)", ["(B)"], 0.0),
    ("Truely", ["True"], 0.0),
    ("", ["valid"], 0.0),
])
def test_exact_match_of_extracted_answer(generated, answers, expected):
    assert exact_match(extract_answer(generated), answers) == expected


def test_continuation_logprob_sums_tokens_past_the_context():
    logprobs = {"tokens": ["Answer", ":", " Paris", "!"], "token_logprobs": [None, -1.0, -2.0, -0.5],
                "text_offset": [0, 6, 7, 13]}
    assert continuation_logprob(logprobs, context_chars=7) == pytest.approx(-2.5)
    # a token straddling the boundary belongs to the continuation
    assert continuation_logprob(logprobs, context_chars=9) == pytest.approx(-2.5)


@pytest.mark.parametrize("logprobs", [None, {}, {"tokens": ["a"], "token_logprobs": [], "text_offset": []},
                                      {"tokens": ["a"], "token_logprobs": [None]}])
def test_missing_echo_logprobs_is_an_error_not_a_chance_score(logprobs):
    with pytest.raises(ScoringError):
        continuation_logprob(logprobs, context_chars=1)
