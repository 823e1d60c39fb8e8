"""kale-ray: KALE (knowledge-aware post-training) as a Ray application.

Importing this package stays cheap on purpose: no torch.cuda, vllm, deepspeed or ray.serve at import
time, so drivers on CPU-only head nodes and `kale-ray --help` start fast. Stages import their heavy
dependencies inside the functions that need them.
"""

__version__ = "0.1.0"
