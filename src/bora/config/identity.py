"""A run's identity: a hash of every config value that can change its result (the schema says which do not).

One definition, used everywhere: the run directory ends in ``seed=<seed>-<identity[:8]>`` (so a sweep over any key
gets one directory per run), a finished run is skipped only for the same identity, and a table takes a run only if
its identity is one the table's sweep plans. ``group`` is the identity without the seed: the runs whose numbers are
averaged into one cell.

Values are canonicalised first, so the same config gives the same hash whether it comes from the typed schema
(``alpha: 16.0``, ``precision: Precision.bf16``) or from plain YAML (``16``, ``"bf16"``).
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bora.config.resolvers import canonical_targets
from bora.config.schema import added_defaults, non_identity_keys

DIR_LENGTH = 8  # hex digits of the identity in a run directory's name
_DROPPED = non_identity_keys() | {"hydra"}
_ADDED = added_defaults()  # fields added after results were recorded: left out at their default


def canonical(value: Any) -> Any:
    if isinstance(value, Enum):
        return canonical(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def identity_values(config: dict, drop_seed: bool = False) -> dict:
    """The resolved config without the keys that cannot change a result (and without ``seed`` if asked)."""
    kept = canonical(config)
    method = kept.get("method")
    if isinstance(method, dict) and "targets" in method:
        method["targets"] = canonical_targets(method["targets"])
    for dotted in _DROPPED | ({"seed"} if drop_seed else set()) | set(_ADDED):
        *parents, leaf = dotted.split(".")
        node = kept
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            if dotted in _ADDED and node[leaf] != canonical(_ADDED[dotted]):
                continue  # an added field away from its default is part of the identity
            node.pop(leaf)
    return kept


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def run_identity(config: dict) -> str:
    """16 hex digits naming one run (model x method x task x trainer x seed, every value that matters)."""
    return _digest(identity_values(config))


def group_identity(config: dict) -> str:
    """16 hex digits naming a configuration across seeds: the runs averaged into one table cell."""
    return _digest(identity_values(config, drop_seed=True))


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two (identity) configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def run_identity_resolver(*, _root_: DictConfig) -> str:
    """``${run_identity:}``: the first digits of the run's identity (``run_identity``), from its own config."""
    top = {key.split(".")[0] for key in _DROPPED if "." not in key}
    values = {}
    for key in _root_.keys():  # never touch run_dir (it holds this very interpolation) or the other dropped keys
        if key in top:
            continue
        node = _root_[key]
        values[key] = (
            OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node
        )
    return run_identity(values)[:DIR_LENGTH]
