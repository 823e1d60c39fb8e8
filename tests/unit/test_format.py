from kale_ray.data.format import answer_text, prompt_text


def test_views_differ_only_by_the_rationale():
    plain = prompt_text("Why is the sky blue?")
    with_r = prompt_text("Why is the sky blue?", "Air scatters blue light most.")
    assert plain.endswith("\nAnswer:") and with_r.endswith("\nAnswer:")
    assert with_r.replace("Rationale: Air scatters blue light most.\n", "") == plain
    assert answer_text(" Rayleigh scattering ") == " Rayleigh scattering"


def test_chat_format_trains_on_the_chat_templates_tokens(smollm2_path, data_root):
    """data.chat_template=true: the trained prompt tokens of both views are the tokenizer's own
    apply_chat_template tokens for the same user message (the call the serving engine's chat_prompt makes
    for /v1/chat/completions), the answer follows them, and eval scores the same prompt."""
    from kale_ray.config import load_config
    from kale_ray.data.format import PromptFormat, chat_messages, prompt_format
    from kale_ray.engines.loading import load_tokenizer
    from kale_ray.train.collate import tokenize_rows
    from tests.train_data import arc_rows, with_rationales

    tokenizer = load_tokenizer(str(smollm2_path))
    rows = with_rationales(arc_rows(data_root, 3))
    fmt = PromptFormat(tokenizer, chat_template=True)
    tokens, report = tokenize_rows(tokenizer, rows, "ka", 512, fmt)
    assert report.rows_used == 3
    for row, student, target, n in zip(rows.to_pylist(), tokens.column("student_ids").to_pylist(),
                                       tokens.column("target_ids").to_pylist(),
                                       tokens.column("answer_len").to_pylist(), strict=True):
        for ids, rationale in ((student, None), (target, row["rationale"])):
            expected = tokenizer.apply_chat_template(chat_messages(row["question"], rationale),
                                                     add_generation_prompt=True, tokenize=True, return_dict=True)
            assert ids[:-n] == list(expected["input_ids"])
        assert tokenizer.decode(student[-n:]) == row["gold_text"].strip()
        assert "<|im_start|>assistant\n" in tokenizer.decode(student[:-n])
    cloze, _ = tokenize_rows(tokenizer, rows, "ka", 512)
    assert cloze.column("student_ids").to_pylist() != tokens.column("student_ids").to_pylist()  # default: cloze

    cfg = load_config(None, [f"model.name_or_path={smollm2_path}", "data.chat_template=true"])
    eval_fmt = prompt_format(cfg)
    question = rows.to_pylist()[0]["question"]
    assert eval_fmt.prompt(question) == fmt.prompt(question) and eval_fmt.answer(" x ") == "x"
    assert prompt_format(load_config(None, [])).prompt(question).endswith("\nAnswer:")


def test_chat_format_needs_a_chat_template():
    import pytest

    from kale_ray.data.format import PromptFormat

    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="data.chat_template=true needs a tokenizer with a chat template"):
        PromptFormat(NoTemplate(), chat_template=True)
