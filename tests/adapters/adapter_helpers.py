"""Helpers for the adapter tests: tiny models built from their configs, method configs from conf/method."""

from __future__ import annotations

import functools

import torch
from omegaconf import OmegaConf

from bora.adapters import adapter_parameters, inject
from bora.config import load_config
from bora.models import build_from_arch

MERGEABLE = ["lora", "dora", "melora", "bora", "sbora-fa", "sbora-fb"]
OURS = [*MERGEABLE, "hydralora"]
PEFT_CONFIGS = ["peft", "adalora", "ia3"]  # conf/method files of method=peft
ALL = [*OURS, *PEFT_CONFIGS]
TASK_OF_MODEL = {"tiny-decoder": "toy-math", "tiny-encoder": "toy-cls"}
# Merged weights round differently from base + update: model logits after merging agree to float32 noise that
# grows through the layers (measured up to 3e-5 on the tiny models), per layer to 1e-5.
MERGED = {"rtol": 1e-4, "atol": 1e-4}


@functools.cache
def _config(model: str, method: str, overrides: tuple[str, ...]):
    return load_config([f"model={model}", f"method={method}", f"task={TASK_OF_MODEL.get(model, 'math')}", *overrides])


def config(method: str = "lora", model: str = "tiny-decoder", *overrides: str):
    """A fresh copy of the composed config (cached: composing takes a few hundred milliseconds)."""
    return OmegaConf.create(OmegaConf.to_container(_config(model, method, tuple(overrides)), resolve=True))


def base_model(cfg):
    """The tiny model of ``cfg`` with its fixed random weights, in eval mode (no dropout anywhere)."""
    return build_from_arch(cfg.model, num_labels=2).eval()


def adapted_model(method: str, model: str = "tiny-decoder", *overrides: str, randomize: bool = True, seed: int = 0):
    """(config, model with adapters injected, eval mode); adapter parameters randomised so the update is non-zero."""
    cfg = config(method, model, *overrides)
    net = base_model(cfg)
    torch.manual_seed(seed)
    inject(net, cfg.method, cfg.model.targets, total_steps=20)
    if randomize:
        randomize_adapters(net, seed)
    return cfg, net.eval()


@torch.no_grad()
def randomize_adapters(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _, param in adapter_parameters(model):
        param.add_(0.1 * torch.randn(param.shape, generator=generator))


def token_batch(cfg, batch: int = 2, length: int = 12, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, cfg.model.arch.vocab_size, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def logits(model, batch) -> torch.Tensor:
    return model(**batch).logits
