"""OmegaConf resolvers used by conf/ (registered in bora.config.registry.register_configs, with ``mul`` there and
``run_identity`` in bora.config.identity). Plain functions: this module imports nothing else of bora.config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAPER_LETTERS = "QKVOGUD"  # the paper's target modules: query, key, value, output, gate, up, down


def canonical_targets(letters: Any) -> Any:
    """Target letters in the paper's order, each once (``VQ`` and ``QQV`` are ``QV``): the same modules, the same
    run. Anything else (not a string, unknown letters) is left as it is for the injection to refuse."""
    if not isinstance(letters, str) or any(c not in PAPER_LETTERS for c in letters):
        return letters
    return "".join(c for c in PAPER_LETTERS if c in letters)


# Order of the method hyperparameters in a run-directory name.
_TAG_KEYS = [("r", "r"), ("blocks", "b"), ("heads", "h"), ("alpha", "a"), ("dropout", "d"), ("targets", "")]


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def method_tag(method: Mapping[str, Any]) -> str:
    """A readable directory name for a method and its hyperparameters.

    ``bora_r8_b16_a16_d0.05_QKV``; BoRA ablations add ``noexp`` / ``nonorm``; a PEFT method adds its config.
    """
    parts = [str(method["name"])]
    for key, short in _TAG_KEYS:
        value = canonical_targets(method.get(key)) if key == "targets" else method.get(key)
        if value is not None:
            parts.append(f"{short}{_fmt(value)}")
    if not method.get("use_exp", True):
        parts.append("noexp")
    if not method.get("use_norm", True):
        parts.append("nonorm")
    for key, value in sorted((method.get("peft") or {}).items()):
        parts.append(f"{key}={_fmt(value)}")
    return "_".join(parts).replace("/", "-").replace(" ", "")


# bora.config.schema.DecodingProtocol, in the order by_protocol takes its values (docs/reproducing.md)
PROTOCOLS = ("bora_authors", "llm_adapters", "training_prompt")


def by_protocol(protocol: Any, bora_authors: Any, llm_adapters: Any, training_prompt: Any) -> Any:
    """``${by_protocol:${.protocol},<bora_authors value>,<llm_adapters value>,<training_prompt value>}``: a setting
    of a generation task that depends on its ``task.protocol`` (conf/task/base/llm_adapters.yaml)."""
    name = getattr(protocol, "value", protocol)
    if name not in PROTOCOLS:
        raise ValueError(f"task.protocol={name!r} is not a decoding protocol; use one of: {', '.join(PROTOCOLS)}")
    return dict(zip(PROTOCOLS, (bora_authors, llm_adapters, training_prompt)))[name]
