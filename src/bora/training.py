"""The training loop: Hugging Face ``Trainer`` with our config mapped onto it.

Why HF Trainer: AdamW, linear decay with warm-up, gradient accumulation, bf16 autocast, seeding, resumable
checkpoints (optimizer, scheduler, RNG state), W&B curves and multi-GPU data parallel through accelerate /
torchrun all come from one well-kept loop. Our only change: checkpoints hold the trainable tensors (adapters and
task head), not the frozen multi-GB base model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from bora.config.resolvers import method_tag
from bora.errors import BoraError

TRAINABLE_FILE = "trainable.safetensors"
PRECISIONS = ("fp32", "bf16", "fp16")
# Renamed in transformers 5.x; the old name still works there but warns.
_CHECKPOINTING_ARG = (
    "activation_checkpointing"
    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


class AdapterTrainer(Trainer):
    """``Trainer`` whose checkpoints store only ``requires_grad`` parameters (everything else is frozen)."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        save_file(trainable_state(model), os.path.join(output_dir, TRAINABLE_FILE))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        saved = load_file(os.path.join(resume_from_checkpoint, TRAINABLE_FILE))
        params = dict(model.named_parameters())
        expected = {name for name, p in params.items() if p.requires_grad}
        if set(saved) != expected:
            raise BoraError(
                f"checkpoint {resume_from_checkpoint} holds other trainable tensors than this model "
                f"({len(set(saved) ^ expected)} differ); delete the run's checkpoints/ folder to start over"
            )
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)


class AdapterStepHook(TrainerCallback):
    """Calls the adapters' per-step hook (AdaLoRA's rank allocation) after each optimizer step."""

    def __init__(self, model: nn.Module):
        from bora.adapters import on_optimizer_step

        self.model = model
        self.hook = on_optimizer_step

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.hook(self.model, state.global_step)


def run_name(cfg) -> str:
    return f"{cfg.experiment_name}/{cfg.model.name}/{cfg.task.name}/{method_tag(cfg.method)}/seed={cfg.seed}"


def training_arguments(cfg, checkpoint_dir: Path, report_to: list[str]) -> TrainingArguments:
    """Map ``cfg.trainer`` (paper appendix B defaults via the task config) onto ``TrainingArguments``."""
    t = cfg.trainer
    if t.precision not in PRECISIONS:
        raise BoraError(f"trainer.precision={t.precision!r}: use one of {', '.join(PRECISIONS)}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise BoraError(f"trainer.device={t.device!r}: use auto, cpu or cuda")
    if t.device == "cuda" and not torch.cuda.is_available():
        raise BoraError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    # transformers >= 5 reads a float warmup_steps in [0, 1) as a ratio of the total steps.
    warmup = t.warmup_steps if t.warmup_steps > 0 else float(t.warmup_ratio)
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        run_name=run_name(cfg),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=t.weight_decay,
        optim="adamw_torch",
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_eps,
        max_grad_norm=t.max_grad_norm,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        **{_CHECKPOINTING_ARG: t.gradient_checkpointing},
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=1,
        eval_strategy="no",
        report_to=report_to,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_pin_memory=t.device != "cpu" and torch.cuda.is_available(),  # pinning is for host-to-GPU copies
        use_cpu=t.device == "cpu",  # also what makes torchrun on CPUs data-parallel (accelerate MULTI_CPU)
        ddp_find_unused_parameters=False,  # every adapter parameter takes part in every step
        disable_tqdm=False,
    )
