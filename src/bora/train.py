"""The shared trainer: ``python -m bora.train [hydra overrides]`` or ``train(cfg) -> metrics``.

One run = one model x method x task x seed. It writes ``<run_dir>/result.json`` (status, resolved config,
metrics, parameter counts, times, memory, versions, git commit, hardware), skips a run that already succeeded
with the same config, and resumes an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from bora import runs
from bora.cli import preflight
from bora.errors import BoraError
from bora.paths import CONF_DIR
from bora.tasks import Metrics

log = logging.getLogger("bora.train")


def train(cfg: DictConfig) -> Metrics:
    """Train and evaluate one run; return its per sub-task metrics (read from result.json when skipped)."""
    run_dir = Path(cfg.run_dir)
    config = runs.resolved_config(cfg)
    is_main = _is_main_process()
    plan = runs.plan_run(run_dir, config, cfg.force, apply=is_main)
    if plan.skip:
        print(f"skip: {run_dir} already succeeded with this config (force=true reruns it)", flush=True)
        return plan.previous["metrics"]

    result: dict[str, Any] = {
        "schema_version": runs.SCHEMA_VERSION,
        "status": "running",
        "experiment": cfg.experiment_name,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "task": cfg.task.name,
        "seed": cfg.seed,
        "run_dir": str(run_dir),
        "config_fingerprint": runs.fingerprint(config),
        "config": config,
        "started_at": runs.now(),
        **runs.environment(),
    }
    if is_main:
        runs.write_json_atomic(run_dir / runs.RESULT_FILE, result)
    wandb_run = None
    try:
        if cfg.logger.name == "wandb" and is_main:
            from bora.training import run_name
            from bora.wandb_logger import WandbRun

            wandb_run = WandbRun(cfg, config, run_name(cfg), result["config_fingerprint"], str(run_dir))
        elif cfg.logger.name not in ("none", "wandb"):
            raise BoraError(f"logger={cfg.logger.name!r}: use logger=none or logger=wandb")
        result.update(_train_and_evaluate(cfg, run_dir, plan.checkpoint, wandb_run is not None))
        result["status"] = "success"
    except BaseException as error:
        result["status"] = "failed"
        result["error"] = {"type": type(error).__name__, "message": str(error), "traceback": traceback.format_exc()}
        raise
    finally:
        result["finished_at"] = runs.now()
        if is_main:
            runs.write_json_atomic(run_dir / runs.RESULT_FILE, result)
        if wandb_run is not None:
            if result["status"] == "success":
                wandb_run.log_final(_flat(result["metrics"]) | {"adapter_params": result["adapter_params"]})
            wandb_run.finish(ok=result["status"] == "success")
    if result["status"] == "success" and is_main:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # only needed to resume an unfinished run
        print(f"done: {run_dir} {cfg.task.metric}={result['headline']['value']:.4f}", flush=True)
    return result.get("metrics", {})


def _train_and_evaluate(cfg: DictConfig, run_dir: Path, checkpoint: Path | None, use_wandb: bool) -> dict[str, Any]:
    """Build model, adapters and data; train with HF Trainer; evaluate. Returns the result fields it measured."""
    from transformers import set_seed

    from bora.adapters import count_adapter_params, inject
    from bora.models import load_model, load_tokenizer
    from bora.tasks import build_task
    from bora.training import AdapterStepHook, AdapterTrainer, training_arguments

    task = build_task(cfg.task)
    tokenizer = load_tokenizer(cfg.model)
    train_data = task.train_dataset(tokenizer)
    if len(train_data) == 0:
        raise BoraError(f"task {cfg.task.name}: the training split is empty; check task.data_dir / max_train_samples")
    args = training_arguments(cfg, run_dir / "checkpoints", ["wandb"] if use_wandb else [])

    set_seed(cfg.seed)  # the head's and the adapters' initialisation depend on the run seed
    model = load_model(cfg.model, num_labels=task.num_labels)
    if cfg.model.kind == "decoder" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    adapted = inject(model, cfg.method, cfg.model.targets, total_steps=_total_steps(cfg, args, len(train_data)))
    _unfreeze_head(model, cfg.model.head_modules if task.kind != "generation" else [])
    if cfg.trainer.gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings must still pass gradients to adapters
    adapter_params = count_adapter_params(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("adapted %d modules; adapter params %d; trainable incl. head %d", len(adapted), adapter_params, trainable)

    trainer = AdapterTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        data_collator=task.data_collator(tokenizer),
        callbacks=[AdapterStepHook(model)],
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - start
    peak_train = _peak_memory()

    if cfg.save_adapter and _is_main_process():
        from bora.adapters import save_adapters

        save_adapters(model, run_dir / "adapter", cfg.method)

    start = time.perf_counter()
    model.eval()
    metrics = task.evaluate(model, tokenizer, cfg.trainer.eval_batch_size, run_dir)
    eval_seconds = time.perf_counter() - start
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "metrics": metrics,
        "headline": {"metric": task.main_metric, "value": task.headline(metrics)},
        "adapter_params": adapter_params,
        "trainable_params": trainable,
        "adapted_modules": len(adapted),
        "train": {
            "wall_time_s": round(train_seconds, 3),
            "global_steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "examples": len(train_data),
            "mean_loss": output.training_loss,
            "resumed_from": str(checkpoint) if checkpoint else None,
            "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in history],
        },
        "eval": {"wall_time_s": round(eval_seconds, 3)},
        "peak_memory": {"train": peak_train, "train_and_eval": _peak_memory()},
    }


def _total_steps(cfg: DictConfig, args, num_examples: int) -> int:
    if cfg.trainer.max_steps > 0:
        return cfg.trainer.max_steps
    world = max(args.world_size, 1)
    per_epoch = -(-num_examples // (cfg.trainer.batch_size * world))  # ceil
    return max(1, int(per_epoch // cfg.trainer.grad_accum * cfg.trainer.epochs))


def _unfreeze_head(model: torch.nn.Module, head_modules: list[str]) -> None:
    for name in head_modules:
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise BoraError(f"model.head_modules: {type(model).__name__} has no module {name!r}") from error
        for param in module.parameters():
            param.requires_grad_(True)


def _peak_memory() -> dict[str, Any]:
    if torch.cuda.is_available():
        return {"device": "cuda", "bytes": torch.cuda.max_memory_allocated(), "measure": "max_memory_allocated"}
    # ru_maxrss is KiB on Linux; it is the process's peak, so earlier jobs of a sweep run in the same process count.
    return {"device": "cpu", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "measure": "max RSS"}


def _flat(metrics: Metrics) -> dict[str, float]:
    return {f"{sub}/{name}": value for sub, values in metrics.items() for name, value in values.items()}


def _is_main_process() -> bool:
    # torchrun / accelerate set RANK before the process group exists; rank 0 owns the run directory.
    return int(os.environ.get("RANK", "0")) == 0


def main() -> None:
    import hydra

    try:
        preflight(sys.argv[1:])
    except BoraError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _run(cfg: DictConfig) -> Metrics:
        return train(cfg)

    _run()


if __name__ == "__main__":
    main()
