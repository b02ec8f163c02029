"""Will the model train on this device at all? A start-up estimate, so that ``model=llama-3-8b`` on a laptop stops
with one line instead of failing at the hub, swapping for hours or being killed by the kernel.

The estimate (a floor, not a forecast): the frozen weights in ``model.dtype`` (0.5 byte a parameter for a 4-bit
base), counted from the architecture on torch's meta device (``model.arch``, or a local folder's config.json; a hub
id without either is not checked), plus the activations of one micro-batch kept for the backward pass, about 34
bytes per token, per layer and per unit of width in 16-bit (Korthikanti et al. 2022, without the attention scores,
which fused attention does not keep), or 2 bytes per token and width per layer with gradient checkpointing. The
device's memory: the GPU's total, or the CPU's ``MemAvailable``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bora.distributed import per_device_batch, world_size
from bora.errors import BoraError

WEIGHT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ACTIVATION_BYTES = 34  # per token x width x layer, 16-bit, kept for backward (selective recomputation's 34 s b h)
CHECKPOINTED_BYTES = 2  # per token x width x layer: only each layer's input is kept


def _architecture(model_cfg) -> dict | None:
    """The HF config fields: ``model.arch``, or a local model folder's config.json; None for a hub id."""
    if model_cfg.get("arch"):
        return dict(model_cfg.arch)
    path = model_cfg.get("path")
    if path and not str(path).startswith("pkg://") and (Path(path) / "config.json").is_file():
        try:
            return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # models._check_config names a broken file
    return None


def parameter_count(arch: dict, kind: str) -> int:
    """Parameters of the architecture, counted on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    fields = {k: v for k, v in arch.items() if k != "model_type"}
    config = AutoConfig.for_model(arch["model_type"], **fields)
    auto = AutoModelForCausalLM if kind == "decoder" else AutoModelForSequenceClassification
    with torch.device("meta"):
        model = auto.from_config(config)
    return sum(p.numel() for p in model.parameters())


def available_bytes(gpu: bool) -> tuple[int | None, str]:
    if gpu:
        import torch

        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory, "this GPU's memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine's available memory"
    except OSError:
        pass
    return None, "memory"


def needed_bytes(cfg, arch: dict) -> tuple[int, str]:
    """(the estimate, what it is made of in words)."""
    params = parameter_count(arch, str(cfg.model.kind))
    per_param = 0.5 if cfg.model.get("quantization") else WEIGHT_BYTES.get(str(cfg.model.dtype), 4)
    weights = int(params * per_param)
    micro = per_device_batch(cfg.trainer.batch_size, cfg.trainer.grad_accum, world_size())
    tokens = micro * int(cfg.task.max_length)
    width = int(arch.get("hidden_size") or arch.get("d_model") or 0)
    layers = int(arch.get("num_hidden_layers") or arch.get("n_layer") or 0)
    checkpointing = bool(cfg.trainer.gradient_checkpointing)
    activations = tokens * width * layers * (CHECKPOINTED_BYTES if checkpointing else ACTIVATION_BYTES)
    how = "with gradient checkpointing" if checkpointing else "kept for the backward pass"
    dtype = "4-bit" if cfg.model.get("quantization") else str(cfg.model.dtype)
    words = (
        f"{weights / 1e9:.1f} GB of {dtype} weights for {params / 1e9:.2f} B parameters and about "
        f"{activations / 1e9:.1f} GB of activations {how} for micro-batches of {micro} x {cfg.task.max_length} tokens"
    )
    return weights + activations, words


def memory_problem(cfg, gpu: bool) -> str | None:
    """Why the model cannot train on this device, in one line; None when it may (or cannot be estimated)."""
    arch = _architecture(cfg.model)
    if not arch or "model_type" not in arch or os.environ.get("BORA_SKIP_MEMORY_CHECK") == "1":
        return None
    need, words = needed_bytes(cfg, arch)
    have, where = available_bytes(gpu)
    if have is None or need <= have:
        return None
    fixes = (
        "a GPU with more memory (see the docs' cluster page)"
        if gpu
        else "a GPU (trainer.device=cuda on a machine that has one; see the docs' cluster page)"
    )
    smaller = "" if cfg.trainer.gradient_checkpointing else "trainer.gradient_checkpointing=true, "
    return (
        f"model={cfg.model.name} needs about {need / 1e9:.0f} GB to train ({words}) but {where} is "
        f"{have / 1e9:.0f} GB; run it on {fixes}, or lower the need: {smaller}a smaller trainer.batch_size or a "
        f"larger trainer.grad_accum (BORA_SKIP_MEMORY_CHECK=1 trains anyway)"
    )


def check_memory(cfg, gpu: bool) -> None:
    problem = memory_problem(cfg, gpu)
    if problem:
        raise BoraError(problem)
