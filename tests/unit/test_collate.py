"""The two views: same answer tokens at the same (left-padded) positions, truncation order, counts."""

import pyarrow as pa
import pytest
import torch

from kale_ray.data.format import answer_text, prompt_text
from kale_ray.train.collate import answer_logits, collate, encode_view, tokenize_rows
from tests.train_data import arc_rows, with_rationales


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="module")
def rows(data_root):
    return with_rationales(arc_rows(data_root, 6))


def test_views_share_answer_tokens_and_differ_in_prompt(tokenizer, rows):
    table, report = tokenize_rows(tokenizer, rows, "ka", max_length=256)
    assert report.rows_used == 6 and report.counts.get("rationale_truncated", 0) == 0
    for src, tok in zip(rows.to_pylist(), table.to_pylist(), strict=True):
        answer = tokenizer(answer_text(src["gold_text"]), add_special_tokens=False)["input_ids"]
        n = tok["answer_len"]
        assert n == len(answer)
        assert tok["student_ids"][-n:] == answer == tok["target_ids"][-n:]
        assert len(tok["target_ids"]) > len(tok["student_ids"])
        student_prompt = tokenizer.decode(tok["student_ids"][:-n])
        assert student_prompt == prompt_text(src["question"])
        assert "Rationale:" in tokenizer.decode(tok["target_ids"][:-n])


def test_collate_lines_up_answers_of_both_views(tokenizer, rows):
    table, _ = tokenize_rows(tokenizer, rows, "ka", max_length=256)
    batch = collate(table.to_pydict(), tokenizer.pad_token_id, with_target=True)
    span = batch["span"]
    labels, mask = batch["labels"], batch["answer_mask"]
    assert labels.shape == (6, span) and mask.sum() == sum(table.column("answer_len").to_pylist())
    for view in ("student", "target"):
        ids = batch[view]["input_ids"]
        # the token predicted at answer position j is the same in both views
        assert torch.equal(ids[:, -span:][mask], labels[mask])
        # left padding: padded positions come first and are masked out
        att = batch[view]["attention_mask"]
        assert (att.sum(-1) == torch.tensor([len(s) for s in table.column(f"{view}_ids").to_pylist()])).all()
        assert (batch[view]["position_ids"][att.bool()].min() == 0)
    logits = torch.randn(6, batch["target"]["input_ids"].shape[1], 7)
    assert answer_logits(logits, span).shape == (6, span, 7)
    assert torch.equal(answer_logits(logits, span)[:, -1], logits[:, -2])


def test_left_padding_does_not_change_the_model_output(tokenizer, rows, smollm2_path):
    """A padded row scores its answer exactly as the same row alone: positions and mask are right."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    table, _ = tokenize_rows(tokenizer, rows.slice(0, 3), "sft", max_length=128)
    batch = collate(table.to_pydict(), tokenizer.pad_token_id, with_target=False)
    with torch.no_grad():
        together = answer_logits(model(**batch["student"]).logits, batch["span"])
        for i in range(3):
            alone = collate(table.slice(i, 1).to_pydict(), tokenizer.pad_token_id, with_target=False)
            one = answer_logits(model(**alone["student"]).logits, alone["span"])[0]
            n = alone["span"]
            assert torch.allclose(together[i, -n:], one, atol=1e-3)


def test_truncation_cuts_the_rationale_first_and_never_the_answer(tokenizer, rows):
    row = rows.to_pylist()[0]
    answer = tokenizer(answer_text(row["gold_text"]), add_special_tokens=False)["input_ids"]
    long_rationale = "Because " + "plants need light to grow and " * 40 + "so the answer follows."
    plain = encode_view(tokenizer, row["question"], answer, 4096)
    view = encode_view(tokenizer, row["question"], answer, len(plain.ids) + 10, long_rationale)
    assert view.rationale_truncated and not view.prompt_truncated
    assert len(view.ids) == len(plain.ids) + 10
    assert view.ids[-len(answer):] == answer
    text = tokenizer.decode(view.ids[: -len(answer)])
    assert text.startswith(prompt_text(row["question"])[: -len("Answer:")] + "Rationale: Because")
    assert text.endswith("\nAnswer:")  # the tail of the prompt survives, only the rationale shrank
    # even without the whole rationale it does not fit: then the prompt loses its oldest tokens
    tight = encode_view(tokenizer, row["question"], answer, len(answer) + 5, long_rationale)
    assert tight.rationale_truncated and tight.prompt_truncated
    assert len(tight.ids) == len(answer) + 5 and tight.ids[-len(answer):] == answer


def test_counts_of_truncated_skipped_and_dropped_rows(tokenizer, data_root):
    rows = with_rationales(arc_rows(data_root, 5), ["ok", "fallback", "dropped", "degenerate", "ok"])
    long = rows.column("rationale").to_pylist()
    long[4] = "word " * 300
    rows = rows.set_column(rows.schema.get_field_index("rationale"), "rationale", pa.array(long))
    table, report = tokenize_rows(tokenizer, rows, "ka", max_length=96)
    counts = report.as_dict()
    assert counts["rows_in"] == 5 and counts["rows_used"] == 3 == table.num_rows
    assert counts["skipped_status_dropped"] == 1 and counts["skipped_status_degenerate"] == 1
    assert counts["rationale_truncated"] >= 1
    assert max(len(ids) for ids in table.column("target_ids").to_pylist()) <= 96
    # sft ignores rationales and statuses; an answer that cannot fit is dropped, not cut
    sft, sft_report = tokenize_rows(tokenizer, rows, "sft", max_length=96)
    assert sft_report.rows_used == 5 and all(t == [] for t in sft.column("target_ids").to_pylist())
    _, tiny = tokenize_rows(tokenizer, rows, "sft", max_length=16)
    assert tiny.counts["dropped_answer_too_long"] + tiny.rows_used == 5
    assert tiny.counts["prompt_truncated"] == tiny.rows_used


def test_unknown_method_is_an_error(tokenizer, rows):
    with pytest.raises(ValueError, match="method"):
        tokenize_rows(tokenizer, rows, "rlhf", 64)
