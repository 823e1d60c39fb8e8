"""Peak memory per worker of the trainer's step for each memory lever, next to `kale-ray train plan`'s prediction.

Real SmolLM2-135M-Instruct on CPU, one worker (the DDP runner without a process group, the trainer's own
`train_step`), `ka`, synthetic rows of exactly --max-length tokens (every row at the cap, the plan's
worst case), each lever measured in a fresh process (tests/train_memory.py: resident set above the
imports, peak of the second step). Columns: peak = whole step's peak over the import baseline, against
the plan's total; step = what the step adds over the model at rest (activations, gradients, the target
pass), against the plan's activations + gradients + target pass. Prints the activation ratio of
gradient checkpointing (without / with) measured and planned, and whether every plan is within 25%.

    PYTHONPATH=$PWD python bench/train_memory.py [--max-length 1024] [--rows 1] [--levers base,gc,...]
"""

from __future__ import annotations

import argparse
import json

LEVERS = {
    "lora": {},
    "lora+gc": {"gradient_checkpointing": True},
    "lora+frozen target": {"ka": {"target": "frozen"}},  # q with the adapters off: no second model
    "lora+bf16 base": {"base_dtype": "bfloat16"},
    "lora+bf16 base+gc": {"base_dtype": "bfloat16", "gradient_checkpointing": True},
    "full": {"lora": {"enabled": False}},
    "full+gc": {"lora": {"enabled": False}, "gradient_checkpointing": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=1, help="rows per micro-batch")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of: {', '.join(LEVERS)}")
    args = parser.parse_args()

    from kale_ray.config.train import TrainConfig
    from kale_ray.engines.registry import prepare_model
    from kale_ray.train.plan import ModelShape, make_plan
    from tests.train_memory import measure_in_subprocess

    path = str(prepare_model("smollm2-135m-instruct"))
    shape = ModelShape.from_config(json.loads((prepare_model("smollm2-135m-instruct") / "config.json").read_text()))
    mb = 1e6
    print(f"SmolLM2-135M-Instruct, ka, {args.rows} row(s) x {args.max_length} tokens, CPU, 1 worker; MB")
    print(f"{'lever':20s} {'peak':>7s} {'plan':>7s} {'ratio':>6s} | {'step':>7s} {'plan':>7s} {'ratio':>6s}")
    results = {}
    for name in args.levers.split(","):
        train = {"micro_batch_size": args.rows, "max_length": args.max_length, **LEVERS[name]}
        measured = measure_in_subprocess(path, train, "ka")
        tc = TrainConfig.model_validate({**train, "method": "ka", "strategy": "ddp", "workers": 1})
        plan = make_plan(shape, tc)
        step_plan = plan.rows["activations"] + plan.rows["gradients"] + plan.rows["ka target pass"]
        results[name] = (measured, plan, step_plan)
        print(f"{name:20s} {measured['peak'] / mb:7.0f} {plan.total / mb:7.0f} {plan.total / measured['peak']:6.2f} | "
              f"{measured['step'] / mb:7.0f} {step_plan / mb:7.0f} {step_plan / measured['step']:6.2f}", flush=True)
    if "lora" in results and "lora+gc" in results:
        (off, plan_off, _), (on, plan_on, _) = results["lora"], results["lora+gc"]
        print(f"gradient checkpointing at max_length {args.max_length}: step memory {off['step'] / on['step']:.1f}x "
              f"smaller measured, activations {plan_off.activations_full / plan_on.activations_checkpointed:.1f}x "
              "smaller planned")
    if "lora" in results and "lora+frozen target" in results:
        live, frozen = results["lora"][0], results["lora+frozen target"][0]
        print(f"frozen target (adapters off) over the live one: peak {frozen['peak'] / live['peak']:.3f}x, "
              f"model at rest {frozen['model'] / live['model']:.3f}x (target <= 1.05)")
    worst = max(abs(plan.total / m["peak"] - 1) for m, plan, _ in results.values())
    print(f"largest plan/peak deviation: {worst:.0%} ({'within' if worst <= 0.25 else 'OUTSIDE'} 25%)")


if __name__ == "__main__":
    main()
