"""``python -m bora.params <training overrides>``: the exact trainable adapter parameter count of a run.

The model is built on the meta device from the architecture stored in its config (``model.arch``): no weights, no
network, a few seconds even for Qwen2.5-14B. The count is the paper's ``#Params`` (adapters only, no task head).
The last line printed is ``adapter_params: N``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bora.adapters import count_adapter_params, inject
from bora.config import load_config
from bora.errors import run_tool
from bora.models import build_from_arch

# AdaLoRA's schedule needs a step count, but its parameter count (at init_r) does not depend on it.
_ANY_STEP_COUNT = 1000


def adapter_param_count(cfg, model=None) -> tuple[int, list[str]]:
    """(trainable adapter parameters, adapted module names) of the composed config ``cfg``; ``model``: a fresh
    meta-device build of ``cfg.model`` to use instead of building one (tests reuse copies of one build)."""
    model = build_from_arch(cfg.model, device="meta") if model is None else model
    names = inject(model, cfg.method, cfg.model.targets, total_steps=_ANY_STEP_COUNT)
    return count_adapter_params(model), names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora params", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", help="the same Hydra overrides as training, e.g. model=llama-3-8b method=bora task=math"
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    run_tool(lambda: _print_count(args.overrides))


def _print_count(overrides: list[str]) -> None:
    cfg = load_config(overrides)
    count, names = adapter_param_count(cfg)
    method = cfg.method
    details = ", ".join(f"{k}={method[k]}" for k in ("r", "blocks", "heads", "alpha") if method.get(k) is not None)
    print(f"model: {cfg.model.name}  method: {method.name} ({details})  targets: {method.targets}")
    print(f"adapted modules: {len(names)}  ({names[0]} ... {names[-1]})")
    print(f"adapter_params: {count}")


if __name__ == "__main__":
    main()
