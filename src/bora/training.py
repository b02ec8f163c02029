"""The training loop: Hugging Face ``Trainer`` with our config mapped onto it, and what guards it.

Why HF Trainer: AdamW, linear decay with warm-up, gradient accumulation, bf16 autocast, seeding, resumable
checkpoints (optimizer, scheduler, RNG state), W&B curves and multi-GPU data parallel through accelerate /
torchrun all come from one well-kept loop. What we add:
- checkpoints hold the trainable tensors (adapters and task head), not the frozen multi-GB base model;
- a diverged run stops at once: a non-finite loss or gradient, or a loss above ``trainer.max_loss_ratio`` times the
  first step's, raises ``Diverged`` (HF would log the NaN as 0 and run on);
- Ctrl-C / SIGTERM stop after the current step with a checkpoint (``Interrupted``), so the rerun resumes there;
- a log entry at every checkpoint and at the last step, so the mean loss over a resumed run's steps is exact.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

# transformers prints "[INFO] Running in WANDB offline mode" when it is first imported with WANDB_MODE=offline, also
# for runs that do not use W&B (logger=none); the run's record says which logger it used.
with contextlib.redirect_stdout(io.StringIO()):
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

from bora.config.resolvers import method_tag
from bora.distributed import per_device_batch, slurm_gpus_requested, world_size
from bora.errors import BoraError, Diverged, Interrupted
from bora.runs import TRAINABLE_FILE

log = logging.getLogger("bora.train")
# Renamed in transformers 5.x; the old name still works there but warns.
_CHECKPOINTING_ARG = (
    "activation_checkpointing"
    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


class AdapterTrainer(Trainer):
    """``Trainer`` whose checkpoints store only ``requires_grad`` parameters (everything else is frozen), and whose
    every step checks its loss (``max_loss_ratio``: see ``Diverged``)."""

    def __init__(self, *args, max_loss_ratio: float | None = None, drop_last: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_loss_ratio = max_loss_ratio
        self.drop_last = drop_last
        self._reference_loss: float | None = None
        # transformers takes any model whose forward has **kwargs for one that divides its loss by the token count
        # of the whole accumulated, all-process batch (num_items_in_batch): it then skips its own division by
        # grad_accum and multiplies the loss by the number of processes. Encoders (RobertaForSequenceClassification
        # ...) take **kwargs but return a per-batch mean, so their loss and gradients came out grad_accum x
        # processes too large. Only the causal-LM loss reads the token count.
        self.model_accepts_loss_kwargs = self.model_accepts_loss_kwargs and loss_reads_token_count(self.model)

    def _get_train_sampler(self, train_dataset=None):
        if not self.drop_last:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return WholeBatches(
            len(dataset),
            self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size,
            self.args.data_seed,
        )

    def _get_num_items_in_batch(self, batch_samples: list, device):
        if self.model_accepts_loss_kwargs or not batch_samples or "labels" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        # A per-batch-mean loss (encoders): this process's examples in the step, so that compute_loss can weigh each
        # micro-batch by its examples (HF only counts tokens for models that take the count themselves).
        return sum(len(batch["labels"]) for batch in batch_samples)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        examples = len(inputs["labels"]) if "labels" in inputs else None
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model_accepts_loss_kwargs or not model.training or examples is None or num_items_in_batch is None:
            return result
        # HF divides a mean loss by the step's micro-batch count: right when the micro-batches are equal, not for
        # an epoch's last, partial step split unevenly (12 + 4 examples). Weighed by examples, grad_accum=2 trains
        # the step one batch of 16 would; full steps keep HF's exact arithmetic (the factor is 1).
        parts = self.current_gradient_accumulation_steps
        if examples * parts == num_items_in_batch:
            return result
        factor = examples * parts / num_items_in_batch
        return (result[0] * factor, result[1]) if return_outputs else result * factor

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = float(loss)  # HF's own NaN filter syncs here as well
        step = self.state.global_step + 1
        if not math.isfinite(value):
            raise Diverged(f"diverged at step {step} (loss={value})", step)
        if self._reference_loss is None:
            self._reference_loss = max(abs(value), _first_logged_loss(self.state.log_history) or 0.0)
        limit = self.max_loss_ratio
        if limit is not None and self._reference_loss > 0 and value > limit * self._reference_loss:
            raise Diverged(
                f"diverged at step {step} (loss={value:.4g}, over {limit:g}x the first step's "
                f"{self._reference_loss:.4g}; trainer.max_loss_ratio)",
                step,
            )
        return loss

    def _run_epoch(self, *args, **kwargs):
        # Resumed from the final checkpoint (interrupted during evaluation), HF's epoch loop still runs: it skips the
        # trained batches and takes one more optimizer step before it checks max_steps. Training is complete: stop.
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        save_file(trainable_state(model), os.path.join(output_dir, TRAINABLE_FILE))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_best_model(self) -> None:
        # load_best_model_at_end: HF looks for full-model weight files; ours hold the trainable tensors only.
        self._load_from_checkpoint(self.state.best_model_checkpoint)

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


class WholeBatches(torch.utils.data.Sampler):
    """``trainer.drop_last``: each epoch a fresh shuffle of the training set (seeded by the data seed and the epoch,
    the same on every process), cut to whole global batches. Every step then trains ``batch_size`` examples on any
    number of processes and any ``grad_accum``; without it an epoch's last, partial batch is filled up with repeated
    examples by accelerate when several processes share it."""

    def __init__(self, size: int, global_batch: int, seed: int):
        self.size, self.global_batch, self.seed, self.epoch = size, global_batch, seed, 0

    def set_epoch(self, epoch: int) -> None:  # HF / accelerate call this before every epoch, also when resuming
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.global_batch * self.global_batch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator)[: len(self)].tolist())


def partial_batch_problem(cfg, num_examples: int, processes: int) -> str | None:
    """Why this run would train its epochs' last, partial batch differently from one process, or None. Several
    processes split a partial batch unevenly, which accelerate evens out by repeating examples: the record would
    state a recipe that did not run. (grad_accum is exact: compute_loss weighs micro-batches by examples.)"""
    t = cfg.trainer
    left = num_examples % t.batch_size
    if processes == 1 or t.drop_last or not left:
        return None
    if 0 <= t.max_steps <= num_examples // t.batch_size:
        return None  # training ends before the first epoch's partial batch
    return (
        f"trainer.batch_size={t.batch_size} leaves a last batch of {left} of task {cfg.task.name}'s {num_examples} "
        f"training examples, which {processes} processes cannot split as one process trains it; set "
        f"trainer.drop_last=true (every step a whole batch, on any number of processes) or a batch size that "
        f"divides {num_examples}"
    )


def loss_reads_token_count(model: nn.Module) -> bool:
    """Whether the model's loss is transformers' causal-LM loss, the one that honours ``num_items_in_batch``
    (a sum over the micro-batch's tokens divided by the whole step's count); PEFT wrappers are looked through."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return base.loss_function is ForCausalLMLoss
    except (AttributeError, KeyError, ValueError):  # no loss_type transformers knows: a loss of its own
        return False


def _first_logged_loss(history: list[dict]) -> float | None:
    """The first logged loss of a resumed run (step 1 is logged: ``logging_first_step``)."""
    return next((entry["loss"] for entry in history if "loss" in entry), None)


def mean_loss(history: list[dict]) -> float | None:
    """The mean training loss over every step, from HF's log history (restored on resume, so across attempts).

    Each entry's ``loss`` is the mean over the steps since the previous entry; ``StepControl`` logs at every
    checkpoint and at the last step, so the entries cover every step exactly once.
    """
    total, previous = 0.0, 0
    for entry in history:
        if "loss" in entry and entry["step"] > previous:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    return total / previous if previous else None


# Ctrl-C, SIGTERM (kill, a SLURM pre-emption or scancel) and SIGUSR2 (SLURM's warning before a time limit, as
# submitit asks for it: hydra.launcher.signal_delay_s) all stop a run after its step with a checkpoint.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class StepControl(TrainerCallback):
    """After each optimizer step: check the gradients were finite; on Ctrl-C / SIGTERM / SIGUSR2 request a
    checkpoint and a stop; log whenever a checkpoint is saved or training ends (exact mean loss across resumes).

    Signals are caught only while ``training`` is set; outside training (data loading, evaluation) a signal stops
    at once. Under data parallel the stop request is agreed by all ranks, so they stop at the same step.
    """

    def __init__(self):
        self.signum: int | None = None
        self.training = False
        self.step: int | None = None  # the last completed optimizer step
        self._previous: dict[int, object] = {}
        self.replaced: dict[int, object] = {}  # the handlers install() replaced, once uninstalled

    # --- signals ---------------------------------------------------------------------------------------------
    def install(self) -> None:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self.replaced = dict(self._previous)
        self._previous.clear()

    def requeue_handler(self, signum: int):
        """The handler an interrupted run hands a SIGUSR2 to once it has recorded itself (and saved its checkpoint):
        the one install() replaced, in a submitit job submitit's, which requeues the job (SLURM's time-limit warning,
        or a pre-emption) and exits, or raises why it will not (``hydra.launcher.max_num_timeout`` spent). None
        for other signals, or when nothing was there to hand on to."""
        handler = self.replaced.get(signum)
        return handler if signum == signal.SIGUSR2 and callable(handler) else None

    def _handle(self, signum, frame) -> None:
        if not self.training or self.signum is not None:  # outside training, or a second signal: stop now
            raise Interrupted(signum, self.step)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
            "(signal again to stop at once)",
            flush=True,
        )

    def _stop_requested(self, args) -> bool:
        flag = self.signum is not None
        if args.world_size > 1 and torch.distributed.is_initialized():
            device = (
                torch.device("cuda", torch.cuda.current_device())
                if torch.cuda.is_available() and torch.distributed.get_backend() == "nccl"
                else torch.device("cpu")
            )
            tensor = torch.tensor([self.signum or 0], device=device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            if tensor.item() and self.signum is None:
                self.signum = int(tensor.item())
            flag = bool(tensor.item())
        return flag

    # --- per step --------------------------------------------------------------------------------------------
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
            raise Diverged(f"diverged at step {state.global_step + 1} (non-finite gradient)", state.global_step + 1)

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        if self._stop_requested(args):
            control.should_save = True
            control.should_training_stop = True
        if control.should_save or state.global_step >= state.max_steps:
            control.should_log = True
        return control


class LogHistory(TrainerCallback):
    """Each logged step (loss, gradient norm, learning rate) as one line of the run's log: the console, labelled
    with the run, and <run_dir>/train.log (instead of the dict HF's progress bar prints)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("step %d: %s", state.global_step, shown)


class ProgressBar(ProgressCallback):
    """HF's progress bar, labelled with what trains (``train <task> <method>``; resumed runs start at their step),
    without its printed log dicts (``LogHistory`` logs them)."""

    def __init__(self, label: str = "train"):
        super().__init__()
        self.label = label

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm import tqdm

            self.training_bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc=self.label, unit="step", dynamic_ncols=True
            )
        self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def use_own_logging(trainer: Trainer, label: str = "train") -> None:
    """Swap HF's progress bar for ``ProgressBar`` (when it shows one) and add ``LogHistory``."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressBar(label))
    trainer.add_callback(LogHistory)


class AdapterStepHook(TrainerCallback):
    """Calls the adapters' per-step hook (AdaLoRA's rank allocation) after each optimizer step."""

    def __init__(self, model: nn.Module):
        from bora.adapters import on_optimizer_step

        self.model = model
        self.hook = on_optimizer_step

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.hook(self.model, state.global_step)


def adapt_model(cfg, model: nn.Module, total_steps: int, head_modules: list[str]) -> tuple[list[str], list[str]]:
    """Attach ``cfg.method``'s adapters to ``model`` as ``bora train`` trains it: adapters in
    ``trainer.adapter_dtype``, the task head (``head_modules``) trainable. Returns (adapted module names, notices)."""
    from bora.adapters import cast_adapters, inject, oversized_rank

    adapted = inject(model, cfg.method, cfg.model.targets, total_steps=total_steps)
    notices = oversized_rank(model, cfg.method.r)
    cast_adapters(model, cfg.trainer.adapter_dtype)
    if getattr(model, "is_quantized", False):
        # HF's Trainer refuses a quantized model unless adapters are attached; it only recognises PEFT's, so say
        # ours are (the flag transformers itself sets when it loads adapters).
        model._hf_peft_config_loaded = True
    for name in head_modules:
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise BoraError(f"model.head_modules: {type(model).__name__} has no module {name!r}") from error
        for param in module.parameters():
            param.requires_grad_(True)
    if cfg.trainer.gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings must still pass gradients to adapters
    return adapted, notices


def build_trainer(
    cfg, model: nn.Module, args: TrainingArguments, train_data, val_data, collator, callbacks: list[TrainerCallback]
) -> AdapterTrainer:
    """The ``AdapterTrainer`` of ``bora train``: the adapters' per-step hook, ``callbacks``, our logging. The
    training-path bench (``bora.bench.train_path``) builds its trainers here too, so it times this very step."""
    trainer = AdapterTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=val_data,
        data_collator=collator,
        callbacks=[AdapterStepHook(model), *callbacks],
        max_loss_ratio=cfg.trainer.max_loss_ratio,
        drop_last=cfg.trainer.drop_last,
    )
    use_own_logging(trainer, f"train {cfg.task.name} {method_tag(cfg.method)}")
    if "wandb" in args.report_to:
        from transformers.integrations import WandbCallback

        trainer.remove_callback(WandbCallback)
        trainer.add_callback(wandb_callback_apart())
    return trainer


def wandb_callback_apart() -> TrainerCallback:
    """HF's W&B callback (curves against ``train/global_step``), with HF's arguments and the model's config nested
    under ``hf`` in the run's config, where HF would put them at the top level beside ours (bora.wandb_logger)."""
    from transformers.integrations import WandbCallback

    class WandbCallbackApart(WandbCallback):
        def setup(self, args, state, model, **kwargs):
            if self._wandb is None:
                return
            self._initialized = True
            if not state.is_world_process_zero:
                return
            model_config = getattr(model, "config", None)
            nested = {"training_arguments": args.to_dict()}
            if model_config is not None:
                nested["model_config"] = model_config if isinstance(model_config, dict) else model_config.to_dict()
            self._wandb.config.update({"hf": nested}, allow_val_change=True)
            self._wandb.define_metric("train/global_step")
            self._wandb.define_metric("*", step_metric="train/global_step", step_sync=True)

    return WandbCallbackApart()


def run_name(cfg) -> str:
    return f"{cfg.experiment_name}/{cfg.model.name}/{cfg.task.name}/{method_tag(cfg.method)}/seed={cfg.seed}"


def uses_gpu(cfg) -> bool:
    """Whether this run trains on a GPU. A run that asked for one and sees none stops here, at start-up, rather
    than train for days on the CPU: ``trainer.device=cuda``, or ``auto`` inside a SLURM job given GPUs."""
    if cfg.trainer.device != "cpu" and not torch.cuda.is_available():
        asked = "trainer.device=cuda" if cfg.trainer.device == "cuda" else slurm_gpus_requested()
        if asked:
            build = (
                "a CPU build of torch" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
            )
            raise BoraError(
                f"{asked} but no CUDA device is visible ({build} {torch.__version__}); install torch's CUDA build "
                "(make install TORCH_INDEX=https://download.pytorch.org/whl/cu126) or check the node's driver, or "
                "set trainer.device=cpu to train on the CPU on purpose"
            )
    return cfg.trainer.device != "cpu" and torch.cuda.is_available()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies in bf16 natively (AVX512-BF16 or AMX), so bf16 autocast trains fast there
    (SmolLM2-135M, batch 16, one thread: 1.7x faster per step than fp32 on a Xeon with AMX)."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def effective_precision(cfg) -> tuple[str, str | None]:
    """(the precision to train in, a notice when it is not the configured one).

    A task's bf16 / fp16 *default* (the paper's setting, inherited through ``${task.precision}``) falls back to
    fp32 on a machine without a GPU that supports it, with a notice the result records (so a CPU run of a paper
    config means the same everywhere); an explicit ``trainer.precision=bf16`` trains in bf16 autocast on a CPU
    with native bf16 (``cpu_has_bf16``) and is an error that says how to fix it elsewhere.
    """
    requested = str(cfg.trainer.precision)
    if requested == "fp32":
        return requested, None
    gpu = uses_gpu(cfg)
    explicit = not OmegaConf.is_interpolation(cfg.trainer, "precision")
    if gpu and (requested == "fp16" or torch.cuda.is_bf16_supported()):
        return requested, None
    if not gpu and explicit and requested == "bf16" and cpu_has_bf16():
        return requested, None
    where = "this GPU" if gpu else "a CPU"
    if explicit:
        native = " without native bf16 (AVX512-BF16 or AMX)" if not gpu and requested == "bf16" else ""
        raise BoraError(
            f"trainer.precision={requested} cannot train on {where}{native}; use trainer.precision=fp32 "
            "(or run on a GPU that supports it)"
        )
    return "fp32", (
        f"precision: the task's default {requested} is not used on {where}; trained in fp32 instead "
        f"(numbers may differ slightly from a {requested} run)"
    )


def side_by_side() -> bool:
    """Whether this run is a job of a launcher that runs several at once on this machine (progress bars of
    parallel jobs would interleave on one terminal; each logged step is labelled instead)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return "joblib" in str(HydraConfig.get().launcher.get("_target_", "")).lower()
    except (ImportError, ValueError):  # not under Hydra (a library call)
        return False


def training_arguments(
    cfg, checkpoint_dir: Path, report_to: list[str], precision: str, validation: bool = False
) -> TrainingArguments:
    """Map ``cfg.trainer`` (paper appendix B defaults via the task config) onto ``TrainingArguments``.

    ``validation``: the task holds out a validation set (``task.val_size``): its loss is scored at every checkpoint
    and training ends on the checkpoint where it was lowest, as LLM-Adapters' finetune.py does."""
    t = cfg.trainer
    gpu = uses_gpu(cfg)
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
        per_device_train_batch_size=per_device_batch(t.batch_size, t.grad_accum, world_size()),  # batch_size: global
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        lr_scheduler_type=str(t.lr_scheduler),
        warmup_steps=warmup,
        weight_decay=t.weight_decay,
        optim="adamw_torch",
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_eps,
        max_grad_norm=t.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **{_CHECKPOINTING_ARG: t.gradient_checkpointing},
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss is a divergence (Diverged), never logged as something else
        save_strategy="steps",
        save_steps=t.eval_steps if validation else t.save_steps,  # the best checkpoint must be one that was saved
        save_total_limit=1,
        eval_strategy="steps" if validation else "no",
        eval_steps=t.eval_steps if validation else None,
        load_best_model_at_end=validation,
        metric_for_best_model="loss" if validation else None,
        greater_is_better=False if validation else None,
        report_to=report_to,
        dataloader_num_workers=t.dataloader_workers,
        dataloader_pin_memory=gpu,  # pinning is for host-to-GPU copies
        # also what makes torchrun on CPUs data-parallel (accelerate MULTI_CPU); and how HF allows bf16 on a CPU
        use_cpu=t.device == "cpu" or (precision == "bf16" and not gpu),
        ddp_find_unused_parameters=False,  # every adapter parameter takes part in every step
        disable_tqdm=side_by_side(),
        **compile_arguments(t, gpu),
    )


def compile_arguments(t, gpu: bool) -> dict:
    """``trainer.compile*`` as HF's ``torch_compile`` arguments: accelerate wraps the model it trains in
    ``torch.compile`` (``Trainer.model_wrapped``); ``Trainer.model``, which evaluation and generation use, stays the
    eager module. HF turns TF32 matmuls on for a compiled run on a GPU (``enable_tf32``, process-wide), which would
    change the maths of a float32 run: ``tf32=False`` keeps torch's default (IEEE float32 matmuls), as eager runs."""
    if not t.compile:
        return {}
    import torch._dynamo

    backend = str(t.compile_backend)
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise BoraError(
            f"trainer.compile_backend={backend!r} is not a torch.compile backend; use one of {', '.join(sorted(known))}"
        )
    return {
        "torch_compile": True,
        "torch_compile_backend": backend,
        "torch_compile_mode": t.compile_mode,
        "tf32": False if gpu else None,
    }


class CompileProbe(TrainerCallback):
    """What compiling cost a run (``trainer.compile``): the wall time of each optimizer step, and torch._dynamo's
    counters over the run: graph breaks (each break splits the captured graph and leaves the code between in eager
    Python), graphs compiled (recompilations included) and the time dynamo and the backend spent compiling.

    ``torch._dynamo.reset()`` at the start: compiled code is cached per code object, and after
    ``torch._dynamo.config.recompile_limit`` (8) entries for one frame dynamo silently runs it eagerly, which a sweep
    of runs in one process (or a test session) would reach."""

    def __init__(self, backend: str, mode: str | None):
        import torch._dynamo
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
        self.backend, self.mode = backend, mode
        self.counters = counters
        self.before = self._snapshot()
        self.steps: list[float] = []
        self._started: float | None = None

    def _snapshot(self) -> dict[str, float]:
        try:
            from torch._dynamo.utils import calculate_time_spent

            seconds = calculate_time_spent().get("total_wall_time", 0.0)
        except (ImportError, AttributeError):  # a private helper: absent in some torch version
            seconds = float("nan")
        return {
            "graph_breaks": sum(self.counters["graph_break"].values()),
            "graphs": self.counters["stats"]["unique_graphs"],
            "compile_s": seconds,
        }

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._started is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self._started)
            self._started = None

    def close(self) -> None:
        """Drop the compiled code once training is done: its graphs hold the trained model (evaluation runs the
        eager module), and the next run of a sweep in this process compiles its own."""
        import torch._dynamo

        torch._dynamo.reset()

    def summary(self) -> dict:
        """The record's ``train.compile``: settings, graph breaks and graphs, compile seconds (dynamo's own count,
        tracing and code generation, forward and backward) and the first step's wall time beside the median of the
        later half's (their difference is the compile time as a run feels it)."""
        now = self._snapshot()
        seconds = now["compile_s"] - self.before["compile_s"]
        # the later half: the second step often recompiles (padded batches change the sequence length, and dynamo
        # then compiles a graph for dynamic shapes)
        later = statistics.median(self.steps[max(1, len(self.steps) // 2) :]) if len(self.steps) > 1 else None
        return {
            "backend": self.backend,
            "mode": self.mode,
            "graph_breaks": int(now["graph_breaks"] - self.before["graph_breaks"]),
            "graphs": int(now["graphs"] - self.before["graphs"]),
            "compile_s": round(seconds, 3) if math.isfinite(seconds) else None,
            "first_step_s": round(self.steps[0], 3) if self.steps else None,
            "later_step_s": round(later, 4) if later is not None else None,
            # the first line of each distinct reason (dynamo's own text runs on with hints and links)
            "break_reasons": sorted(
                {reason.strip().splitlines()[0][:200] for reason in self.counters["graph_break"] if reason.strip()}
            )[:10],
        }
