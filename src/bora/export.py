"""``bora export <run_dir> <out_dir>``: a finished run's adapter as a standard PEFT adapter, task head included.

Every mergeable method is exactly a LoRA of some rank (``bora.adapters.export``), so the export is a PEFT LoRA that
``peft.PeftModel.from_pretrained(base, out_dir)`` loads onto the plain base model; a trained task head (a GLUE
classifier) goes into ``modules_to_save``. The export is verified before this command succeeds: it is reloaded with
PEFT onto a fresh base model, and its logits on a few inputs must equal the trained model's (``--tolerance``).
The last line printed is ``max_abs_logit_diff: X``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bora.errors import BoraError, run_tool
from bora.record import read_record

TASK_TYPES = {"encoder": "SEQ_CLS", "decoder": "CAUSAL_LM"}


def _inputs(model, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A few fixed token sequences (4 x 16, ids clear of special tokens) on the model's device."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, min(vocab_size, 1000), (4, 16), generator=generator)
    device = next(model.parameters()).device
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def export_run(run_dir: Path, out_dir: Path, tolerance: float = 1e-5) -> float:
    """Export ``run_dir``'s adapter into ``out_dir`` and verify it; returns the largest logit difference."""
    from peft import PeftModel

    from bora.adapters import export_peft_lora, load_adapters
    from bora.adapters.inject import cast_adapters
    from bora.models import load_model
    from bora.tasks import build_task

    record = read_record(run_dir)
    if record is None:
        raise BoraError(f"{run_dir} holds no result.json; pass a run directory (outputs/<experiment>/.../seed=...)")
    if not (run_dir / "adapter").is_dir():
        raise BoraError(f"{run_dir} has no adapter/ (status {record.status}; save_adapter=false?); nothing to export")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BoraError(f"{out_dir} exists and is not empty; choose a new folder (nothing is overwritten)")
    cfg = OmegaConf.create(record.config)
    task = build_task(cfg.task)
    heads = list(cfg.model.head_modules) if task.kind != "generation" else []

    model = load_model(cfg.model, num_labels=task.num_labels)
    load_adapters(model, run_dir / "adapter")
    # bf16-trained adapters (trainer.adapter_dtype=bf16) load in bf16; the exported PEFT LoRA holds the same values
    # in float32, as PEFT computes them, so the faithfulness check below compares float32 with float32
    cast_adapters(model, "fp32")
    model.eval()  # after loading: the injected adapter layers come in training mode (dropout on)
    export_peft_lora(
        model, out_dir, heads=heads, base_model_name_or_path=cfg.model.path, task_type=TASK_TYPES[str(cfg.model.kind)]
    )

    reloaded = PeftModel.from_pretrained(load_model(cfg.model, num_labels=task.num_labels), str(out_dir)).eval()
    batch = _inputs(model, model.config.vocab_size)
    with torch.no_grad():
        expected = model(**batch).logits.float()
        got = reloaded(**batch).logits.float()
    diff = float((expected - got).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    if not diff <= tolerance * scale:
        shutil.rmtree(out_dir)  # ours (it was new or empty): an unfaithful export must not look like a result
        raise BoraError(
            f"the PEFT reload differs from the trained model by {diff:.3g} in the logits (tolerance "
            f"{tolerance:g} x {scale:.3g}); the export is not faithful and {out_dir} was removed"
        )
    return diff


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (holds result.json and adapter/)")
    parser.add_argument("out_dir", type=Path, help="a new folder for the PEFT adapter")
    parser.add_argument(
        "--tolerance", type=float, default=1e-5, help="largest logit difference allowed (relative to max(1, |logits|))"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        diff = export_run(args.run_dir, args.out_dir, args.tolerance)
        print(f"exported {args.run_dir} -> {args.out_dir} (PEFT LoRA; verified by PeftModel.from_pretrained)")
        print(f"max_abs_logit_diff: {diff:.3g}")

    run_tool(run)


if __name__ == "__main__":
    main()
