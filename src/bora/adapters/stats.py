"""What a trained adapter looks like inside, for the run record: BoRA's Sigma per layer.

BoRA's ``Sigma_jk = diag(exp(sigma_jk / Mav(sigma)))`` starts in ``[e^-2, e^2]`` (``sigma / Mav`` of a Kaiming-uniform
draw lies in ``[-2, 2]``). Nothing bounds it during training: if ``Mav`` shrinks while one entry stays, that entry's
scale grows as ``exp`` of a ratio that can reach ``b^2 r``; on a tiny model one layer reached 5e10. We keep the
paper's formula and make its behaviour visible: the largest Sigma entry and ``Mav(sigma)`` of every layer, and a
notice when any entry passes ``SIGMA_WARN`` (1e4, i.e. one ``sigma`` more than 9.2 times the mean absolute value).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bora.adapters.inject import adapter_layers

SIGMA_WARN = 1e4


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def sigma_stats(model: nn.Module) -> list[dict]:
    """Per BoRA layer: its name, the largest entry of any ``Sigma_jk`` and ``Mav(sigma)`` (None if not finite)."""
    rows = []
    with torch.no_grad():
        for name, layer in adapter_layers(model):
            if hasattr(layer, "block_scales") and hasattr(layer, "sigma"):
                rows.append({"layer": name, "sigma_max": _finite(float(layer.block_scales().max())),
                             "mav": _finite(float(layer.sigma.abs().mean()))})
    return rows


def adapter_stats(model: nn.Module) -> tuple[dict, list[str]]:
    """(the record's ``adapter_stats``, notices). Empty for methods without Sigma."""
    layers = sigma_stats(model)
    if not layers:
        return {}, []
    maxima = [row["sigma_max"] if row["sigma_max"] is not None else math.inf for row in layers]
    mavs = [row["mav"] for row in layers if row["mav"] is not None]
    over = [row["layer"] for row, top in zip(layers, maxima) if top > SIGMA_WARN]
    ordered = sorted(maxima)
    summary = {"layers": len(layers), "sigma_max": _finite(max(maxima)),
               "sigma_max_median": _finite(ordered[len(ordered) // 2]),
               "mav_min": min(mavs) if mavs else None, "mav_max": max(mavs) if mavs else None,
               "layers_over_warn": len(over), "warn_threshold": SIGMA_WARN}
    notices = []
    if over:
        notices.append(f"BoRA Sigma: {len(over)} of {len(layers)} layers have an entry above {SIGMA_WARN:g} "
                       f"(largest {max(maxima):.3g}, first {over[0]}); see adapter_stats")
    return {"sigma": {"summary": summary, "per_layer": layers}}, notices
