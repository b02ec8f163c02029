"""``bora export <run_dir> <out_dir>``: a finished run's adapter as a standard PEFT adapter, task head included.

Every mergeable method is exactly a LoRA of some rank (``bora.adapters.export``), so the export is a PEFT LoRA that
``peft.PeftModel.from_pretrained(base, out_dir)`` loads onto the plain base model; a trained task head (a GLUE
classifier) goes into ``modules_to_save``. The export is verified before this command succeeds: it is reloaded with
PEFT onto a fresh base model, and its logits on a few inputs must equal those of the model as trained (its adapters
in the dtype they trained in, ``trainer.adapter_dtype``) to within ``--tolerance`` x max(1, |logits|). The default
tolerance follows that dtype: 1e-5 for float32 adapters, bf16's unit roundoff 2**-8 for bf16 ones (their updates
are rounded to bf16 in the trained model, while PEFT computes them in float32). The adapter weights are written in
float32. The last line printed is ``max_abs_logit_diff: X``. Only a run with status success is exported; a
failed check or write leaves nothing behind (the folders it made go, a given empty folder is emptied).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bora.errors import BoraError, run_tool
from bora.paths import unwritable_folder
from bora.record import Status, Unreadable, read_record

TASK_TYPES = {"encoder": "SEQ_CLS", "decoder": "CAUSAL_LM"}
FP32_TOLERANCE = 1e-5  # float32 adapters: the export computes the same update, up to float32 reassociation


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """What ``export_run`` wrote and how it was verified."""

    max_abs_logit_diff: float  # between the PEFT reload and the model as trained
    tolerance: float  # relative: the check passes when the difference is at most tolerance x scale
    scale: float  # max(1, largest |logit| of the model as trained)
    weights_dtype: str  # the dtype of the exported adapter weights (lora_A, lora_B, DoRA's magnitude)
    reference_dtype: str  # the dtype the trained adapters computed in (adapter_dtype_used: bf16, fp32, ...)


def default_tolerance(dtypes: set[torch.dtype]) -> float:
    """The default ``--tolerance`` for adapters trained in ``dtypes``: 1e-5 when all are float32 (or wider); else
    the unit roundoff of the least precise one (``finfo.eps / 2``: 2**-8 for bf16). A bf16 adapter rounds its input,
    its hidden product and its update to 8 significant bits in the trained model, and PEFT does not (it holds
    float32 adapter weights on a float32 base), so the two differ by bf16 roundings of the adapters' contribution;
    measured on the tiny models, 3e-7 to 8e-4 of max(1, |logits|), all within one bf16 rounding of the largest
    logit, while an export without its adapter (or head) misses by 0.07 to 0.15 of it."""
    coarsest = max((torch.finfo(dtype).eps for dtype in dtypes), default=0.0)
    if coarsest <= torch.finfo(torch.float32).eps:
        return FP32_TOLERANCE
    return coarsest / 2


def _inputs(model, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A few fixed token sequences (4 x 16, ids clear of special tokens) on the model's device."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, min(vocab_size, 1000), (4, 16), generator=generator)
    device = next(model.parameters()).device
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _refuse(run_dir: Path, record) -> None:
    """A ``BoraError`` unless ``record`` is a finished run: only a success is a result to publish."""
    if record.status is Status.SUCCESS:
        return
    why = f"status {record.status}"
    if record.error is not None:
        message = (record.error.message.strip().splitlines() or [""])[0][:200]
        why += f": {record.error.type}" + (f": {message}" if message else "")
    raise BoraError(
        f"{run_dir} is not a finished run ({why}); only a run with status success can be exported: rerun it to "
        "finish it, or export another run"
    )


def _discard(out_dir: Path, made: Path | None) -> None:
    """Remove a partial export: the folders it made (``made``, the topmost), else what it wrote into the empty
    folder the user gave (the folder itself stays)."""
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        return
    for child in out_dir.iterdir() if out_dir.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def export_run(run_dir: Path, out_dir: Path, tolerance: float | None = None) -> ExportCheck:
    """Export ``run_dir``'s adapter into ``out_dir`` and verify it against the model as trained.

    ``tolerance``: the largest logit difference allowed, relative to max(1, |logits|); ``None``: by the adapters'
    trained dtype (``default_tolerance``). A run that is not a success, an unreadable result.json or an out_dir that
    cannot be written is a one-line ``BoraError`` before anything is written; a failed check or write removes what
    the export wrote and raises one too."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    try:
        record = read_record(run_dir)
    except Unreadable as error:
        raise BoraError(
            f"{error.path} is unreadable ({error.reason}): the run's result was cut off or damaged, so {run_dir} "
            "cannot be exported; rerun the run, or export another one"
        ) from None
    if record is None:
        raise BoraError(f"{run_dir} holds no result.json; pass a run directory (outputs/<experiment>/.../seed=...)")
    _refuse(run_dir, record)
    if not (run_dir / "adapter").is_dir():
        raise BoraError(f"{run_dir} has no adapter/ (status {record.status}; save_adapter=false?); nothing to export")
    why = unwritable_folder(out_dir)
    if why is not None:
        raise BoraError(
            f"cannot export into {out_dir}: {why}; choose another out_dir (a new or empty folder you can write to)"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BoraError(f"{out_dir} exists and is not empty; choose a new folder (nothing is overwritten)")
    made = None  # the topmost folder the export creates: removed with what is in it if the export fails
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            break
        made = folder
    try:
        return _export(run_dir, out_dir, record, tolerance)
    except BaseException as error:  # a failed check or write, Ctrl-C: a partial export must not look like a result
        _discard(out_dir, made)
        if not isinstance(error, OSError):
            raise
        where = f" ({error.filename})" if error.filename else ""
        if error.filename and Path(error.filename).resolve().is_relative_to(out_dir.resolve()):
            raise BoraError(
                f"writing the export into {out_dir} failed: {error.strerror or error}{where}; nothing was kept: "
                "free space or choose another out_dir"
            ) from None
        raise BoraError(
            f"exporting {run_dir} failed: {error.strerror or error}{where}; nothing was kept in {out_dir}"
        ) from None


def _export(run_dir: Path, out_dir: Path, record, tolerance: float | None) -> ExportCheck:
    from peft import PeftModel
    from safetensors import safe_open

    from bora.adapters import export_peft_lora, load_adapters
    from bora.adapters.export import PEFT_WEIGHTS
    from bora.adapters.inject import adapter_parameters, dtype_names
    from bora.models import load_model
    from bora.tasks import build_task

    cfg = OmegaConf.create(record.config)
    task = build_task(cfg.task)
    heads = list(cfg.model.head_modules) if task.kind != "generation" else []

    # The reference is the model as trained and evaluated: load_adapters keeps the dtype the adapters were saved in
    # (trainer.adapter_dtype), and a bf16 layer computes its update in bf16. Not cast to float32: a float32 copy
    # computes other logits (and BoRA's Sigma from its bf16 sigma anew), which is not what the run reported.
    model = load_model(cfg.model, num_labels=task.num_labels)
    load_adapters(model, run_dir / "adapter")
    model.eval()  # after loading: the injected adapter layers come in training mode (dropout on)
    trained_dtypes = {param.dtype for _, param in adapter_parameters(model)}
    if tolerance is None:
        tolerance = default_tolerance(trained_dtypes)

    # The weights are written in float32 (lora_factors() computes the factors in float32 from the trained bf16
    # values, BoRA's Sigma as the trained layer computes it), not in bf16: PeftModel.from_pretrained on a float32
    # base holds float32 LoRA weights whatever the file holds (it copies into the layers it builds; so do
    # autocast_adapter_dtype=False and low_cpu_mem_usage=True), so PEFT computes in float32 either way and a bf16
    # file would only round the factors once more. Measured on the tiny models (max |logit diff| to the bf16-trained
    # model): tiny-decoder BoRA 4.6e-3 written in float32 against 5.6e-3 written in bf16 (B' Sigma' and the rank
    # b r factors are not bf16 numbers); LoRA, DoRA and the tiny-encoder runs the same either way.
    export_peft_lora(
        model, out_dir, heads=heads, base_model_name_or_path=cfg.model.path, task_type=TASK_TYPES[str(cfg.model.kind)]
    )
    with safe_open(str(out_dir / PEFT_WEIGHTS), framework="pt") as weights:
        written = {weights.get_slice(k).get_dtype() for k in weights.keys() if ".lora_" in k}
    weights_dtype = "+".join(sorted({"F32": "fp32", "BF16": "bf16", "F16": "fp16"}.get(d, d) for d in written))

    reloaded = PeftModel.from_pretrained(load_model(cfg.model, num_labels=task.num_labels), str(out_dir)).eval()
    batch = _inputs(model, model.config.vocab_size)
    with torch.no_grad():
        expected = model(**batch).logits.float()
        got = reloaded(**batch).logits.float()
    diff = float((expected - got).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    reference_dtype = dtype_names(trained_dtypes)
    if not diff <= tolerance * scale:  # export_run removes what was written
        raise BoraError(
            f"the PEFT reload differs from the trained model (adapters {reference_dtype}) by {diff:.3g} in the "
            f"logits (tolerance {tolerance:g} x {scale:.3g}); the export is not faithful and was removed from "
            f"{out_dir}"
        )
    return ExportCheck(diff, tolerance, scale, weights_dtype, reference_dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (holds result.json and adapter/)")
    parser.add_argument("out_dir", type=Path, help="a new folder for the PEFT adapter")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest logit difference allowed (relative to max(1, |logits|)); default by the adapters' trained "
        f"dtype: {FP32_TOLERANCE:g} for fp32, 2**-8 for bf16",
    )
    args = parser.parse_args(argv)

    def run() -> None:
        check = export_run(args.run_dir, args.out_dir, args.tolerance)
        print(
            f"exported {args.run_dir} -> {args.out_dir} (PEFT LoRA, adapter weights {check.weights_dtype}; verified "
            f"by PeftModel.from_pretrained against the model as trained, adapters {check.reference_dtype}, "
            f"tolerance {check.tolerance:g} x {check.scale:.3g})"
        )
        print(f"max_abs_logit_diff: {check.max_abs_logit_diff:.3g}")

    run_tool(run)


if __name__ == "__main__":
    main()
