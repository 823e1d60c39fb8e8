"""CUDA bf16 against the CPU fp32 reference: the trainer's KA step and the hf engine's scoring.

    PYTHONPATH=$PWD python bench/gpu_check.py [--model PATH] [--device cuda] [--dtype bfloat16]

For a GPU machine that has torch, transformers and peft but not Ray, vLLM or DeepSpeed (CI has no GPU;
this is what a session with a lent GPU runs, in well under 10 minutes). Without CUDA it says so and
exits 0; `--device cpu` runs the same comparison on a CPU in bf16, which is how it is tested here.

1. Scoring: `HFEngine.loglikelihood` (contexts batched, options on their cache) and `HFEngine.score`
   (echo: every token's log-prob) on the device in `--dtype`, against the engine on the CPU in float32:
   the largest log-likelihood and per-token differences, and how many items pick the same option.
2. KA step: the trainer's own `train_step` (kale_ray.train.loop, `train.precision=bf16`: bf16 autocast,
   fp32 LoRA weights and AdamW states) on the device, against the same step in fp32 on the CPU, from the
   same initial weights: the loss, KL and CE of the step and the relative difference of the LoRA update.
   `train_step` needs pydantic and pyarrow (the config and the token tables); where either is missing
   the script says so and runs the step's core instead: the plain view's forward with gradients, the
   with-rationale view's forward without (the live target), `method_sums("ka")`, backward, and compares
   loss and gradients.

The model: `--model` (a local checkpoint), else kale-ray's prepared SmolLM2-135M-Instruct when its cache
has it, else a seeded random model of SmolLM2's shape with a word-level tokenizer (nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ITEMS = [  # (question, options, gold, rationale)
    ("Which gas do plants take in from the air to make food?", ["carbon dioxide", "oxygen", "nitrogen", "helium"], 0,
     "Plants take in carbon dioxide and use light to turn it into sugar."),
    ("What is the capital of France?", ["Lyon", "Paris", "Nice", "Lille"], 1, "Paris is the capital city of France."),
    ("Which planet is known as the red planet?", ["Venus", "Jupiter", "Mars", "Saturn"], 2,
     "Mars looks red because of iron oxide on its surface."),
    ("What do bees make from nectar?", ["wax", "silk", "milk", "honey"], 3, "Bees turn nectar into honey in the hive."),
    ("Which organ pumps blood through the body?", ["the heart", "the lungs", "the liver", "the skin"], 0,
     "The heart is a muscle that pumps blood through the vessels."),
    ("What is frozen water called?", ["steam", "ice", "dew", "fog"], 1, "Water freezes into ice below zero degrees."),
]


def model_path(arg: str | None, workdir: Path) -> tuple[str, str]:
    """(checkpoint, what it is)."""
    if arg:
        return arg, f"--model {arg}"
    cache = Path(os.environ.get("KALE_CACHE", Path.home() / ".cache" / "kale-ray")) / "models" / "smollm2-135m-instruct"
    if (cache / "config.json").is_file():
        return str(cache), f"SmolLM2-135M-Instruct from {cache}"
    return str(random_model(workdir / "random-smollm2")), "a seeded random model of SmolLM2-135M's shape"


def random_model(out: Path) -> Path:
    """SmolLM2-135M's architecture with seeded random weights and a word-level tokenizer over the
    words of `ITEMS`: the numbers compare devices, not answers."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted({w for q, opts, _, r in ITEMS for text in [q, r, *opts, "Question: Answer: Rationale: the"]
                    for w in text.replace("?", " ?").replace(".", " .").replace(":", " :").split()})
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, pad_token_id=0,
                         eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def check_scoring(path: str, device: str, dtype: str) -> dict[str, Any]:
    from kale_ray.data.format import answer_text, prompt_text
    from kale_ray.engines.hf import HFEngine

    pairs = [(prompt_text(q), answer_text(o)) for q, opts, _, _ in ITEMS for o in opts]
    ref, dev = HFEngine(path, dtype="float32", device="cpu"), HFEngine(path, dtype=dtype, device=device)
    want, got = ref.loglikelihood(pairs), dev.loglikelihood(pairs)
    ll_diff = max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True))
    same, start = 0, 0
    for _, opts, _, _ in ITEMS:
        a, b = [x[0] for x in want[start:start + len(opts)]], [x[0] for x in got[start:start + len(opts)]]
        same += a.index(max(a)) == b.index(max(b))
        start += len(opts)
    seqs = [ref.encode(c + x) for c, x in pairs]
    token_diff = max(abs(a - b) for s, t in zip(ref.score(seqs), dev.score(seqs), strict=True)
                     for a, b in zip(s.logprobs[1:], t.logprobs[1:], strict=True))
    return {"options": len(pairs), "max_abs_loglikelihood_diff": ll_diff, "max_abs_token_logprob_diff": token_diff,
            "same_prediction": f"{same}/{len(ITEMS)}"}


def _rows() -> list[dict[str, Any]]:
    return [{"id": str(i), "question": q, "choices": opts, "gold": g, "gold_text": opts[g], "rationale": r,
             "status": "ok"} for i, (q, opts, g, r) in enumerate(ITEMS)]


def check_train_step(path: str, device: str) -> dict[str, Any]:
    """The trainer's `train_step` on `device` in bf16 and on the CPU in fp32, one step each."""
    import pyarrow as pa
    import torch

    from kale_ray.config.train import LoraConfig, OptimConfig, TrainConfig
    from kale_ray.engines.loading import load_tokenizer
    from kale_ray.train.collate import tokenize_rows
    from kale_ray.train.loop import build_model, train_step
    from kale_ray.train.runners import DDPRunner

    tokenizer = load_tokenizer(path)
    runs = {}
    for name, where, precision in (("reference", "cpu", "fp32"), ("device", device, "bf16")):
        tc = TrainConfig(method="ka", optim=OptimConfig(lr=1e-4, schedule="constant"), max_length=256,
                         micro_batch_size=len(ITEMS), precision=precision, strategy="ddp", lora=LoraConfig(enabled=True))
        tokens, _ = tokenize_rows(tokenizer, pa.Table.from_pylist(_rows()), "ka", tc.max_length)
        torch.manual_seed(0)  # the same LoRA initialisation on both
        runner = DDPRunner(build_model(path, tc), tc, 1, 1, torch.device(where))
        before = {n: p.detach().float().cpu().clone() for n, p in runner.module.named_parameters() if p.requires_grad}
        rec = train_step([tokens.to_pydict()], method="ka", tc=tc, runner=runner, frozen=None,
                         pad_id=tokenizer.pad_token_id, device=torch.device(where))
        update = torch.cat([(p.detach().float().cpu() - before[n]).flatten()
                            for n, p in runner.module.named_parameters() if p.requires_grad])
        runs[name] = (rec, update)
    (ref, ref_update), (dev, dev_update) = runs["reference"], runs["device"]
    return {"path": "kale_ray.train.loop.train_step",
            **{f"{k}_reference": ref[k] for k in ("loss", "kl", "ce")}, **{f"{k}_device": dev[k] for k in ("loss", "kl", "ce")},
            "loss_abs_diff": abs(ref["loss"] - dev["loss"]), "ce_rel_diff": abs(ref["ce"] - dev["ce"]) / abs(ref["ce"]),
            "lora_update_rel_l2_diff": float((dev_update - ref_update).norm() / ref_update.norm())}


def check_step_core(path: str, device: str) -> dict[str, Any]:
    """Without pydantic/pyarrow: the KA step's core as the trainer computes it, loss and gradients."""
    import torch
    from peft import LoraConfig, get_peft_model

    from kale_ray.data.format import answer_text, prompt_text
    from kale_ray.engines.loading import load_causal_lm, load_tokenizer
    from kale_ray.train.losses import method_sums

    tokenizer = load_tokenizer(path)
    out = {}
    for name, where, autocast in (("reference", "cpu", False), ("device", device, True)):
        torch.manual_seed(0)
        model = get_peft_model(load_causal_lm(path, dtype="float32"), LoraConfig(
            r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False))
        model.to(where).train()
        loss = torch.zeros((), device=where)
        for q, opts, g, r in ITEMS:
            answer = tokenizer(answer_text(opts[g]), add_special_tokens=False).input_ids
            plain = tokenizer(prompt_text(q), add_special_tokens=False).input_ids + answer
            cond = tokenizer(prompt_text(q, r), add_special_tokens=False).input_ids + answer
            span, labels = len(answer), torch.tensor([answer], device=where)
            with torch.autocast(device_type=torch.device(where).type, dtype=torch.bfloat16, enabled=autocast):
                with torch.no_grad():
                    target = model(input_ids=torch.tensor([cond], device=where)).logits[:, -span - 1:-1].float()
                student = model(input_ids=torch.tensor([plain], device=where)).logits[:, -span - 1:-1].float()
            loss = loss + method_sums("ka", student, labels, torch.ones_like(labels, dtype=torch.bool), target).loss
        loss.backward()
        grads = torch.cat([p.grad.float().cpu().flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (float(loss.detach()), grads)
    (ref_loss, ref_g), (dev_loss, dev_g) = out["reference"], out["device"]
    return {"path": "step core (pydantic or pyarrow missing)", "loss_reference": ref_loss, "loss_device": dev_loss,
            "loss_abs_diff": abs(ref_loss - dev_loss), "grad_rel_l2_diff": float((dev_g - ref_g).norm() / ref_g.norm())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped (--device cpu runs the comparison on a CPU)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path, what = model_path(args.model, Path(tmp))
        result: dict[str, Any] = {"model": what, "device": args.device, "dtype": args.dtype, "torch": torch.__version__}
        if args.device.startswith("cuda"):
            result["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        result["scoring"] = check_scoring(path, args.device, args.dtype)
        try:
            import pyarrow  # noqa: F401
            import pydantic  # noqa: F401
        except ImportError as err:
            print(f"gpu_check: {err.name} is not installed: the trainer's train_step needs it; comparing the "
                  "KA step's core instead", flush=True)
            result["ka_step"] = check_step_core(path, args.device)
        else:
            result["ka_step"] = check_train_step(path, args.device)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
