"""What a trained adapter looks like inside, for the run record: the singular values of every layer's update, and
BoRA's Sigma per layer.

Spectrum (paper Figure 4): the singular values of each adapted layer's trained ``dW``, computed once at the end of
training (from the factors of ``lora_factors()`` where the method has them: a QR of each, then the SVD of a
``k x k`` core, so an 8B model's layers cost milliseconds; else from ``delta_weight()``). Recorded per layer:
- the paper's measures (sec. 4.5, Figure 4, after HiRA): how many values exceed ``PAPER_THRESHOLD`` = 0.005
  (absolute) and the sum of the squared values (``||dW||_F^2``), both over every value;
- ``values``: the spectrum itself, every value above ``SPECTRUM_FLOOR`` (1e-6) of the largest, 6 significant
  digits: at most ``min(b r, m, n)`` for a factored update (BoRA r=8 b=32: 256 floats a layer), so any other
  measure can be recomputed from the record;
- how many lie above 1e-3 and 1e-2 of the largest (the numerical rank at two relative tolerances), and the entropy
  effective rank ``exp(H(s / sum s))`` (Roy & Vetterli, 2007).
BoRA's bound is ``min(b r, m, n)``, LoRA's ``r``: the record shows which of them training reaches. Records written
before full spectra kept the largest 64 values as ``top`` (``recorded_values`` reads either).

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
SPECTRUM_FLOOR = 1e-6
SPECTRUM_TOLERANCES = (1e-3, 1e-2)
PAPER_THRESHOLD = 0.005  # the paper's (and HiRA's) count of singular values, absolute
PAPER_COUNT = f"above_abs_{PAPER_THRESHOLD:g}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def sigma_stats(model: nn.Module) -> list[dict]:
    """Per BoRA layer: its name, the largest entry of any ``Sigma_jk`` and ``Mav(sigma)`` (None if not finite)."""
    rows = []
    with torch.no_grad():
        for name, layer in adapter_layers(model):
            if hasattr(layer, "block_scales") and hasattr(layer, "sigma"):
                rows.append(
                    {
                        "layer": name,
                        "sigma_max": _finite(float(layer.block_scales().max())),
                        "mav": _finite(float(layer.sigma.abs().mean())),
                    }
                )
    return rows


def singular_values(layer: nn.Module) -> torch.Tensor | None:
    """The singular values of a layer's ``dW`` (float64, descending); None for an update no single ``dW`` holds."""
    if not getattr(layer, "mergeable", True):
        return None
    with torch.no_grad():
        factors = getattr(layer, "lora_factors", None)
        if factors is not None and getattr(layer, "delta_is_lora_product", True):
            lora_A, lora_B = (t.double() for t in factors())
            if lora_A.shape[0] < min(lora_A.shape[1], lora_B.shape[0]):
                core = torch.linalg.qr(lora_B).R @ torch.linalg.qr(lora_A.T).R.T  # dW = s Q_B (R_B R_A^T) Q_A^T
                return torch.linalg.svdvals(core * layer.scaling)
        return torch.linalg.svdvals(layer.delta_weight().double())


def spectrum_of(values: torch.Tensor) -> dict:
    """The record of one layer's singular values (see the module docstring)."""
    top = float(values[0]) if len(values) else 0.0
    kept = values[values > SPECTRUM_FLOOR * top] if top > 0 else values[:0]
    record = {"values": [float(f"{v:.6g}") for v in kept.tolist()], "count": len(values)}
    record[PAPER_COUNT] = int((values > PAPER_THRESHOLD).sum())
    record["sum_squares"] = float(f"{float((values**2).sum()):.6g}")
    for tolerance in SPECTRUM_TOLERANCES:
        record[f"above_{tolerance:g}"] = int((values > tolerance * top).sum()) if top > 0 else 0
    weights = values / values.sum() if top > 0 else values
    weights = weights[weights > 0]
    record["effective_rank"] = round(float(torch.exp(-(weights * weights.log()).sum())), 4) if top > 0 else 0.0
    return record


def recorded_values(layer_record: dict) -> list[float]:
    """A layer record's singular values, descending: ``values`` (every value above the floor), or ``top`` (the
    largest 64, records written before full spectra)."""
    return layer_record["values"] if "values" in layer_record else layer_record.get("top", [])


def spectrum_stats(model: nn.Module) -> tuple[list[dict], list[str]]:
    """(per adapted layer with a single, finite ``dW``: its name, shape and ``spectrum_of`` its singular values;
    the names of the layers left out because their ``dW`` is not finite, e.g. a BoRA Sigma entry overflowed)."""
    rows, left_out = [], []
    for name, layer in adapter_layers(model):
        try:
            values = singular_values(layer)
        except RuntimeError:  # the SVD of a matrix holding inf / nan does not converge
            values = torch.tensor([math.nan])
        if values is None:
            continue
        if torch.isfinite(values).all():
            rows.append({"layer": name, "shape": [layer.out_features, layer.in_features], **spectrum_of(values)})
        else:
            left_out.append(name)
    return rows, left_out


def adapter_stats(model: nn.Module) -> tuple[dict, list[str]]:
    """(the record's ``adapter_stats``: ``spectrum`` for every method with a single ``dW``, ``sigma`` for BoRA;
    notices)."""
    spectrum, left_out = spectrum_stats(model)
    stats = (
        {
            "spectrum": {
                "tolerances": list(SPECTRUM_TOLERANCES),
                "paper_threshold": PAPER_THRESHOLD,
                "floor": SPECTRUM_FLOOR,
                "per_layer": spectrum,
                "left_out": left_out,
            }
        }
        if spectrum or left_out
        else {}
    )
    notices = (
        [
            f"spectrum: {len(left_out)} of {len(spectrum) + len(left_out)} layers left out, their update dW is "
            f"not finite (first {left_out[0]}); see adapter_stats"
        ]
        if left_out
        else []
    )
    layers = sigma_stats(model)
    if not layers:
        return stats, notices
    maxima = [row["sigma_max"] if row["sigma_max"] is not None else math.inf for row in layers]
    mavs = [row["mav"] for row in layers if row["mav"] is not None]
    over = [row["layer"] for row, top in zip(layers, maxima) if top > SIGMA_WARN]
    ordered = sorted(maxima)
    summary = {
        "layers": len(layers),
        "sigma_max": _finite(max(maxima)),
        "sigma_max_median": _finite(ordered[len(ordered) // 2]),
        "mav_min": min(mavs) if mavs else None,
        "mav_max": max(mavs) if mavs else None,
        "layers_over_warn": len(over),
        "warn_threshold": SIGMA_WARN,
    }
    if over:
        notices.append(
            f"BoRA Sigma: {len(over)} of {len(layers)} layers have an entry above {SIGMA_WARN:g} "
            f"(largest {max(maxima):.3g}, first {over[0]}); see adapter_stats"
        )
    return {**stats, "sigma": {"summary": summary, "per_layer": layers}}, notices
