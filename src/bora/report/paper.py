"""The BoRA paper's reported numbers (``bora/paper_results/*.csv``) and how each paper row maps onto our runs.

A paper row names a method the way the paper prints it (``BoRA``, r=8, b=16; Table 7's ``BoRA w/o Exp``; Table 8's
target modules). ``paper_method`` turns it into the method config our runs record, so that its ``method_tag`` (the
run-directory name, ``bora.config.resolvers.method_tag``) finds the runs of that row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bora.config.resolvers import method_tag
from bora.errors import BoraError

PAPER_DIR = Path(__file__).resolve().parent / "paper_results"

# Paper label -> (method.name, fixed hyperparameters the paper states once in sec. 4.1).
METHODS = {
    "LoRA": ("lora", {}),
    "DoRA": ("dora", {}),
    "MELoRA": ("melora", {"blocks": 4}),  # 4 mini LoRAs of rank r
    "HydraLoRA": ("hydralora", {"heads": 3}),  # 3 B heads of rank r
    "BoRA": ("bora", {}),
    "SBoRA-FA": ("sbora-fa", {}),  # the SBoRA paper's tables (sbora_*.csv)
    "SBoRA-FB": ("sbora-fb", {}),
}
VARIANTS = {"BoRA": {}, "BoRA w/o Exp": {"use_exp": False}, "BoRA w/o Norm": {"use_norm": False}}  # Table 7
PAPER_DROPOUT = 0.05  # appendix B; alpha = 2r


def paper_table(csv_name: str) -> pd.DataFrame:
    """One paper table as transcribed (``b`` is NaN for methods without blocks)."""
    path = PAPER_DIR / csv_name
    if not path.is_file():
        raise BoraError(f"paper table {path} not found; the package's paper_results/ folder is incomplete")
    return pd.read_csv(path, dtype={"params_M": str})


def _int(value) -> int | None:
    return None if pd.isna(value) else int(value)


def paper_method(row: pd.Series, targets: str) -> dict:
    """The method config (as in ``result.json``'s ``config.method``) of one paper row."""
    label = row["method"] if "method" in row.index else "BoRA"
    if label not in METHODS:
        raise BoraError(f"paper method {label!r} has no mapping; known: {', '.join(METHODS)}")
    name, fixed = METHODS[label]
    r = int(row["r"])
    method = {
        "name": name,
        "r": r,
        "alpha": 2 * r,
        "dropout": PAPER_DROPOUT,
        "blocks": _int(row.get("b")),
        "heads": None,
        "targets": row.get("target_modules", targets),
        "use_exp": True,
        "use_norm": True,
    }
    method.update(fixed)
    method.update(VARIANTS[row["variant"]] if "variant" in row.index else {})
    return method


def paper_tag(row: pd.Series, targets: str) -> str:
    """The run-directory name (``method_tag``) of the runs that reproduce a paper row."""
    return method_tag(paper_method(row, targets))


def method_label(row: pd.Series) -> str:
    """The row label the paper prints: ``LoRA (r=8)``, ``BoRA (r=8, b=16)``, ``BoRA w/o Exp``."""
    if "variant" in row.index:
        return row["variant"]
    blocks = _int(row.get("b"))
    return f"{row['method']} (r={int(row['r'])}" + (f", b={blocks})" if blocks else ")")
