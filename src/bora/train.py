"""The shared trainer: ``python -m bora.train [hydra overrides]`` or ``train(cfg) -> metrics``.

One run = one model x method x task x seed. It writes ``<run_dir>/result.json`` (a ``bora.record.RunRecord``:
status, resolved config, identity, data checksums, metrics, parameter counts, times, memory, versions, git commit,
hardware), skips a run that already succeeded with the same identity, resumes an unfinished one from its last
checkpoint, and with ``force=true`` reruns a success beside it, replacing it only once the rerun has succeeded.

Statuses: ``success`` (the only one that enters a table), ``failed`` (an error, or diverged: exit code 1),
``interrupted`` (Ctrl-C / SIGTERM / SIGUSR2: exit code 130 / 143 / 140, the rerun resumes; in a submitit job a
SIGUSR2, SLURM's time-limit warning, requeues the job), ``running`` (in progress, or killed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
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
from bora.config.compose import resolved, split_command_line
from bora.config.identity import group_identity, run_identity
from bora.config.schema import check_pairings, validate
from bora.config.sweep import keep_previous_multirun_yaml, preflight
from bora.distributed import is_main_process, join_slurm_job, world_size
from bora.errors import BoraError, Diverged, Interrupted
from bora.paths import CONF_DIR
from bora.record import ErrorInfo, RunRecord, Status, write_record
from bora.tasks import Metrics
from bora.tasks.sources import data_record

log = logging.getLogger("bora.train")


def say(message: str) -> None:
    """A line about the run: through logging under Hydra (the console, labelled with the run, and train.log),
    printed otherwise (a library call without logging set up)."""
    if logging.getLogger().handlers:
        log.info(message)
    else:
        print(message, flush=True)


def train(cfg: DictConfig) -> Metrics:
    """Train and evaluate one run; return its per sub-task metrics (read from result.json when skipped)."""
    from bora.memory_check import check_memory
    from bora.models import check_source
    from bora.training import StepControl, effective_precision, uses_gpu

    join_slurm_job()  # several SLURM tasks of one job: one data-parallel run (before anything reads the world size)
    config = resolved(cfg)
    validate(config)
    check_pairings(config)
    run_dir = Path(cfg.run_dir)
    is_main = is_main_process()
    if cfg.trainer.torch_threads:
        torch.set_num_threads(cfg.trainer.torch_threads)
    # start-up checks, before the run records anything: a GPU asked for and not found, a model package not
    # installed, a model too large for this device
    gpu = uses_gpu(cfg)
    check_source(cfg.model)
    check_memory(cfg, gpu)
    precision, precision_notice = effective_precision(cfg)  # an impossible explicit precision stops here
    identity = run_identity(config)
    data = data_record(config["task"])
    shared = runs.reused(run_dir, Path(cfg.output_dir), cfg.experiment_name, list(cfg.reuse_from), identity, data)
    if shared is not None and not cfg.force:
        say(f"skip: this run already succeeded in {shared[0]} (reuse_from)")
        return shared[1].metrics or {}
    with runs.RunLock(run_dir) if is_main else contextlib.nullcontext():
        decision = runs.decide(run_dir, identity, config, cfg.force, data, apply=is_main)
        if decision.skip:
            say(f"skip: {run_dir} already succeeded with this config (force=true reruns it)")
            return decision.previous.metrics or {}
        old_log = run_dir / "train.log"
        old_log_bytes = old_log.stat().st_size if decision.replaces is not None and old_log.is_file() else 0
        if decision.replaces is not None:
            say(f"force=true: rerunning in {decision.work_dir}; the previous success stays until this one succeeds")
        record = RunRecord(
            status=Status.RUNNING,
            experiment=cfg.experiment_name,
            model=cfg.model.name,
            method=cfg.method.name,
            task=cfg.task.name,
            seed=cfg.seed,
            run_dir=str(run_dir),
            identity=identity,
            group=group_identity(config),
            config=config,
            started_at=runs.now(),
            data=data,
            precision={"requested": str(cfg.trainer.precision), "used": precision},
            notices=[precision_notice] if precision_notice else [],
            wandb_run_id=decision.wandb_run_id,
            replaces=runs.kept_name(decision.replaces) if decision.replaces is not None else None,
            **runs.environment(),
        )
        work_dir = decision.work_dir
        if precision_notice:
            say(f"notice: {precision_notice}")
        if is_main:
            _write(work_dir, record)
        control = StepControl()
        control.install()
        wandb_run = None
        interrupted_by: int | None = None
        try:
            if cfg.logger.name == "wandb" and is_main:
                from bora.training import run_name
                from bora.wandb_logger import WandbRun

                wandb_run = WandbRun(cfg, config, run_name(cfg), decision.wandb_run_id, str(work_dir))
            measured = _train_and_evaluate(
                cfg, work_dir, decision.checkpoint, wandb_run is not None, precision, control
            )
            record = RunRecord.model_validate(
                {
                    **record.model_dump(),
                    **measured,
                    "status": Status.SUCCESS,
                    "notices": record.notices + measured["notices"],
                }
            )
        except Interrupted as interrupted:
            interrupted_by = interrupted.signum
            record.status = Status.INTERRUPTED
            checkpoint = runs.latest_checkpoint(work_dir / runs.CHECKPOINTS)
            where = f"at step {interrupted.step}" if interrupted.step is not None else "before training"
            resume = f"rerun resumes from {checkpoint.name}" if checkpoint else "no checkpoint yet, a rerun starts over"
            message = f"{run_dir}: interrupted {where} ({interrupted}); {resume}"
            record.error = ErrorInfo(type="Interrupted", message=message, step=interrupted.step)
            raise Interrupted(interrupted.signum, interrupted.step, message) from None
        except Diverged as diverged:
            record.status = Status.FAILED
            message = f"{diverged}{_half_precision_on_cpu(cfg)}"
            record.error = ErrorInfo(type="Diverged", message=message, step=diverged.step)
            raise BoraError(f"{run_dir}: {message}; the run is recorded as failed") from None
        except BaseException as error:
            record.status = Status.FAILED
            disk = runs.disk_error(error)
            if disk is None:
                record.error = _error_info(error)
                raise
            problem = runs.unwritable(disk, work_dir)
            record.error = ErrorInfo(type="OSError", message=str(problem))
            raise problem from None
        finally:
            control.uninstall()
            record.finished_at = runs.now()
            if is_main:
                _write(work_dir, record, quiet=record.status is not Status.SUCCESS)
            if wandb_run is not None:
                if record.ok:
                    wandb_run.log_final(_flat(record.metrics) | {"adapter_params": record.adapter_params})
                if (work_dir / "result.json").is_file():
                    wandb_run.log_record(work_dir)
                wandb_run.finish(ok=record.ok)
            requeue = control.requeue_handler(interrupted_by) if interrupted_by is not None else None
            if requeue is not None:
                print(f"interrupted: {record.error.message}", file=sys.stderr, flush=True)
                requeue(interrupted_by, None)  # submitit requeues the job, which resumes from the checkpoint
        if is_main:
            shutil.rmtree(work_dir / runs.CHECKPOINTS, ignore_errors=True)  # only needed to resume an unfinished run
            if decision.replaces is not None:
                kept = runs.promote(work_dir, run_dir, decision.replaces, old_log_bytes)
                say(f"force=true: the previous result is kept as {kept}")
            value = record.headline.value if record.headline else None
            shown = f"{value:.4f}" if value is not None else "undefined"
            summary = f"loss {record.train.mean_loss:.4f}, " if record.train and record.train.mean_loss else ""
            say(
                f"done: {run_dir} {cfg.task.metric}={shown} ({summary}{record.train.global_steps} steps, "
                f"{record.train.wall_time_s:.0f} s training)"
            )
    return record.metrics or {}


def _half_precision_on_cpu(cfg: DictConfig) -> str:
    """The likely cause of a divergence when float16 weights or fp16 autocast run on a CPU, else ""."""
    on_cpu = str(cfg.trainer.device) == "cpu" or not torch.cuda.is_available()
    half = [
        f"{key}={value}"
        for key, value in (("model.dtype", cfg.model.dtype), ("trainer.precision", cfg.trainer.precision))
        if str(getattr(value, "value", value)) in ("float16", "fp16")
    ]
    if not (on_cpu and half):
        return ""
    return (
        f" ({' and '.join(half)} on a CPU, the likely cause: float16 overflows here without a GPU's loss "
        "scaling; use model.dtype=float32 or bfloat16)"
    )


def _write(work_dir: Path, record: RunRecord, quiet: bool = False) -> None:
    try:
        write_record(work_dir, record)
    except OSError as error:
        if not quiet:
            raise runs.unwritable(error, work_dir) from None
        print(
            f"error: could not record status {record.status} in {work_dir}: {runs.unwritable(error, work_dir)}",
            file=sys.stderr,
            flush=True,
        )


def _error_info(error: BaseException) -> ErrorInfo:
    return ErrorInfo(type=type(error).__name__, message=str(error), traceback=traceback.format_exc())


def _train_and_evaluate(
    cfg: DictConfig, work_dir: Path, checkpoint: Path | None, use_wandb: bool, precision: str, control
) -> dict[str, Any]:
    """Build model, adapters and data; train with HF Trainer; evaluate. Returns the record fields it measured."""
    from transformers import set_seed

    from bora.adapters import adapter_dtype_used, count_adapter_params
    from bora.adapters.stats import adapter_stats
    from bora.models import load_model, load_tokenizer
    from bora.tasks import build_task
    from bora.training import (
        CompileProbe,
        adapt_model,
        build_trainer,
        mean_loss,
        partial_batch_problem,
        training_arguments,
    )

    notices: list[str] = []
    task = build_task(cfg.task)
    tokenizer = load_tokenizer(cfg.model)
    train_data = task.train_dataset(tokenizer)
    if len(train_data) == 0:
        raise BoraError(f"task {cfg.task.name}: the training split is empty; check task.data_dir / max_train_samples")
    if cfg.trainer.batch_size > len(train_data):
        # every step would train on the whole split, fewer examples than the batch this run would record
        raise BoraError(
            f"bad value trainer.batch_size={cfg.trainer.batch_size}: task {cfg.task.name} has {len(train_data)} "
            f"training examples, so no step could train on that many; set trainer.batch_size <= {len(train_data)}"
        )
    problem = partial_batch_problem(cfg, len(train_data), world_size())
    if problem:
        raise BoraError(problem)
    val_data = task.validation_dataset(tokenizer)
    args = training_arguments(
        cfg, work_dir / runs.CHECKPOINTS, ["wandb"] if use_wandb else [], precision, validation=val_data is not None
    )

    set_seed(cfg.seed)  # the head's and the adapters' initialisation depend on the run seed
    model = load_model(cfg.model, num_labels=task.num_labels)
    if cfg.model.kind == "decoder" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.trainer.compile and cfg.model.kind == "encoder" and getattr(model.config, "problem_type", 0) is None:
        # what a sequence-classification head sets at its first forward (our labels: class ids, or one score);
        # set there, it fails a guard of the compiled graph and compiles the whole model a second time
        model.config.problem_type = "regression" if task.num_labels == 1 else "single_label_classification"
    head_modules = cfg.model.head_modules if task.kind != "generation" else []
    adapted, adapt_notices = adapt_model(cfg, model, _total_steps(cfg, args, len(train_data)), head_modules)
    notices += adapt_notices
    adapter_params = count_adapter_params(model)
    adapter_dtype = {"requested": str(cfg.trainer.adapter_dtype), "used": adapter_dtype_used(model)}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("adapted %d modules; adapter params %d; trainable incl. head %d", len(adapted), adapter_params, trainable)

    # trainer.compile: HF compiles the model it trains (trainer.model_wrapped); `model` itself stays eager for
    # evaluation and generation below
    probe = CompileProbe(args.torch_compile_backend, args.torch_compile_mode) if args.torch_compile else None
    trainer = build_trainer(
        cfg, model, args, train_data, val_data, task.data_collator(tokenizer), [control, *([probe] if probe else [])]
    )
    if checkpoint:
        say(f"resuming {work_dir} from {checkpoint.name} (step {checkpoint.name.removeprefix('checkpoint-')})")
    memory = PeakMemory()
    start, start_cpu = time.perf_counter(), time.process_time()
    control.training = True
    if cfg.trainer.max_steps != 0:  # 0: evaluate the model as initialised (the untrained baseline)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    control.training = False
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    if control.signum is not None:
        raise Interrupted(control.signum, trainer.state.global_step)
    peak_train = memory.peak()
    _check_finite_weights(model, trainer.state.global_step)
    compiled = probe.summary() if probe else None
    if probe:
        probe.close()
        say(
            f"compiled ({compiled['backend']}, mode {compiled['mode'] or 'default'}): {compiled['compile_s']} s "
            f"compiling, {compiled['graph_breaks']} graph breaks, {compiled['graphs']} graphs; first step "
            f"{compiled['first_step_s']} s, later steps {compiled['later_step_s']} s"
        )

    if cfg.save_adapter and is_main_process():
        from bora.adapters import save_adapters

        save_adapters(model, work_dir / "adapter", cfg.method)

    # Mixed-precision training leaves accelerate's autocast wrapper on model.forward; evaluation runs the model in
    # its own dtype (model.dtype, adapters in trainer.adapter_dtype), as the sources evaluate a bf16 base in bf16,
    # and a bf16-autocast key/value would not fit a float32 model's paged cache.
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)
    start, start_cpu = time.perf_counter(), time.process_time()
    model.eval()
    # every rank evaluates its share of the test sets (and reads which an interrupted attempt finished); rank 0
    # writes the predictions
    metrics = task.evaluate(model, tokenizer, cfg.trainer.eval_batch_size, work_dir)
    reused = getattr(task, "reused_sets", [])
    if reused:
        sets = len([name for name in metrics if name != "average"])
        notices.append(
            f"evaluation resumed: the predictions of {', '.join(reused)} ({len(reused)} of {sets} test sets) come "
            "from an interrupted attempt with the same weights"
        )
    eval_seconds, eval_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    undefined = dict(getattr(task, "undefined", {}))
    for sub, values in metrics.items():
        for name, value in values.items():
            if value is not None and not math.isfinite(value):
                raise Diverged(f"diverged: metric {sub}/{name} is {value} after training")
            if value is None:
                undefined.setdefault(f"{sub}/{name}", "undefined")
        shown = ", ".join(_shown(name, value) for name, value in values.items())
        log.info("eval %s: %s", sub, shown)  # one line per test set
    headline = task.headline(metrics)
    stats, sigma_notices = adapter_stats(model)
    notices += sigma_notices + [f"metric {key}: {why}" for key, why in undefined.items()]
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "metrics": metrics,
        "undefined_metrics": undefined,
        "headline": {"metric": task.main_metric, "value": headline},
        "adapter_params": adapter_params,
        "adapter_dtype": adapter_dtype,
        "generation_engine": {}
        if task.generation_engine is None
        else {"requested": str(cfg.task.generation_engine), "used": task.generation_engine},
        "trainable_params": trainable,
        "adapted_modules": len(adapted),
        "train": {
            "wall_time_s": round(train_seconds, 3),
            "cpu_time_s": round(train_cpu_seconds, 3),
            "global_steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "examples": len(train_data),
            "mean_loss": mean_loss(trainer.state.log_history),
            "resumed_from": str(checkpoint) if checkpoint else None,
            "compile": compiled,
            "loss_history": [{"step": e["step"], "loss": e["loss"], "grad_norm": e.get("grad_norm")} for e in history],
            # task.val_size: the held-out loss at each checkpoint, and the checkpoint training ended on
            "validation": None
            if val_data is None
            else {
                "examples": len(val_data),
                "loss_history": [
                    {"step": e["step"], "loss": e["eval_loss"]} for e in trainer.state.log_history if "eval_loss" in e
                ],
                "best_step": _step_of(trainer.state.best_model_checkpoint),
                "best_loss": trainer.state.best_metric,
            },
        },
        "eval": {"wall_time_s": round(eval_seconds, 3), "cpu_time_s": round(eval_cpu_seconds, 3)},
        "peak_memory": {"train": peak_train, "train_and_eval": memory.peak()},
        "adapter_stats": stats,
        "notices": notices,
    }


def _step_of(checkpoint: str | None) -> int | None:
    return None if checkpoint is None else int(Path(checkpoint).name.removeprefix(runs.CHECKPOINT_PREFIX))


def _check_finite_weights(model: torch.nn.Module, step: int) -> None:
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise Diverged(
            f"diverged by step {step}: {len(bad)} trainable tensors hold non-finite values (first: {bad[0]})", step
        )


def _total_steps(cfg: DictConfig, args, num_examples: int) -> int:
    if cfg.trainer.max_steps >= 0:
        return max(1, cfg.trainer.max_steps)  # AdaLoRA's schedule needs at least one step, even untrained
    if cfg.trainer.drop_last:
        num_examples -= num_examples % cfg.trainer.batch_size
    # HF's count: each rank's micro-batches per epoch (ceil), over the accumulation steps
    micro_batches = -(-num_examples // (args.per_device_train_batch_size * max(args.world_size, 1)))
    return max(1, int(micro_batches // cfg.trainer.grad_accum * cfg.trainer.epochs))


class PeakMemory:
    """Peak memory of this run only, also when a sweep runs several in one process.

    GPU: ``torch.cuda.max_memory_allocated`` after a reset. CPU: the process's peak resident set (``VmHWM``),
    reset through ``/proc/self/clear_refs`` where Linux allows it; elsewhere the process's lifetime peak
    (``ru_maxrss``, which then includes earlier runs of the same process), named as such in ``measure``.
    """

    def __init__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = _vm_hwm() is not None
        except OSError:
            self.resettable = False

    def peak(self) -> dict[str, Any]:
        if self.cuda:
            return {"device": "cuda", "bytes": torch.cuda.max_memory_allocated(), "measure": "max_memory_allocated"}
        if self.resettable:
            return {"device": "cpu", "bytes": _vm_hwm(), "measure": "peak RSS of this run (VmHWM)"}
        return {
            "device": "cpu",
            "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "measure": "peak RSS of the process (ru_maxrss; earlier runs of a sweep count)",
        }


def _vm_hwm() -> int | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _shown(name: str, value: float | None) -> str:
    """A metric as a person reads it: counts as integers, the rest to 4 decimals, undefined as such."""
    if value is None:
        return f"{name} undefined"
    if name == "n" and float(value).is_integer():
        return f"n {int(value)}"
    return f"{name} {value:.4f}"


def _flat(metrics: Metrics | None) -> dict[str, float]:
    return {
        f"{sub}/{name}": value
        for sub, values in (metrics or {}).items()
        for name, value in values.items()
        if value is not None
    }


def main() -> None:
    import hydra

    from bora.errors import fail

    try:
        first = preflight(sys.argv[1:])
        if not split_command_line(sys.argv[1:])[2]:  # a single run
            from bora.training import effective_precision

            effective_precision(first)  # an impossible explicit precision is a start-up error too (sweeps: per job)
            runs.check_writable(Path(first.run_dir))  # before Hydra's job set-up writes there
        else:
            sweep_dir = Path(first.hydra.sweep.dir)
            runs.check_writable(sweep_dir)
            keep_previous_multirun_yaml(sweep_dir)
    except BoraError as error:
        fail(str(error))

    single_run = not split_command_line(sys.argv[1:])[2]

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _run(cfg: DictConfig) -> Metrics:
        if not single_run:
            return train(cfg)  # a sweep member's error goes to Hydra's launcher, which decides if the sweep goes on
        try:
            return train(cfg)
        except BoraError as error:  # a run that started has its failed record: ours is the one line, no Hydra hint
            fail(str(error), code=1)

    try:
        _run()
    except Interrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr, flush=True)
        sys.exit(interrupted.exit_code)


if __name__ == "__main__":
    main()
