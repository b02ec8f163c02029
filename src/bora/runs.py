"""One self-describing ``result.json`` per run: the source of truth for every table.

The run directory is a deterministic function of the config (``cfg.run_dir``). A run whose result says success
for the same config fingerprint is skipped; a different config in the same directory is refused rather than
overwritten; an unfinished run (killed, failed) resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bora.errors import BoraError
from bora.paths import PROJECT_ROOT

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1
# Keys that cannot change what a run computes, so they are left out of its fingerprint.
_NOT_IN_FINGERPRINT = {
    "force", "logger", "output_dir", "run_dir", "save_adapter",
    "trainer.logging_steps", "trainer.save_steps", "trainer.dataloader_workers",
}
_PACKAGES = ["torch", "transformers", "datasets", "peft", "accelerate", "hydra-core", "omegaconf", "evaluate",
             "wandb", "safetensors", "tokenizers", "numpy", "bora"]


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


def fingerprint(config: dict[str, Any]) -> str:
    """A hash of everything in the resolved config that can change the result."""
    kept = json.loads(json.dumps(config, default=str))  # a deep copy we may edit
    kept.pop("hydra", None)
    for dotted in _NOT_IN_FINGERPRINT:
        *parents, leaf = dotted.split(".")
        node = kept
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BoraError(f"{path} is not valid JSON ({error}); move it away to rerun this run") from error


@dataclass
class RunPlan:
    """What to do with a run directory: skip (done), or train (resuming from ``checkpoint`` if set)."""

    skip: bool
    previous: dict[str, Any] | None = None
    checkpoint: Path | None = None


def _is_complete(checkpoint: Path) -> bool:
    # HF's Trainer writes trainer_state.json after the weights, optimizer and RNG state, so a checkpoint whose
    # state file is missing or cut short was interrupted mid-write (e.g. the job was killed) and cannot resume.
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


CHECKPOINT_PREFIX = "checkpoint-"  # HF Trainer's folder name (not imported: transformers would slow bora.plan)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder; half-written ones are skipped with a message."""
    steps = [(p.name.removeprefix(CHECKPOINT_PREFIX), p) for p in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")]
    for _, path in sorted(((int(step), p) for step, p in steps if step.isdigit()), reverse=True):
        if _is_complete(path):
            return path
        print(f"ignoring incomplete checkpoint {path} (no readable trainer_state.json)", flush=True)
    return None


def plan_run(run_dir: Path, config: dict[str, Any], force: bool, apply: bool = True) -> RunPlan:
    """Decide from ``run_dir/result.json`` whether this run is done, must resume, or starts fresh.

    With ``apply=False`` (data-parallel ranks other than 0) the same decision is made without touching files.
    """
    run_dir = Path(run_dir)
    previous = read_result(run_dir)
    checkpoints = run_dir / "checkpoints"
    this = fingerprint(config)
    if previous is None:
        return RunPlan(skip=False, checkpoint=latest_checkpoint(checkpoints))
    same = previous.get("config_fingerprint") == this
    if previous.get("status") == "success":
        if force:
            if apply:
                kept = run_dir / f"result.replaced-{previous.get('finished_at', now()).replace(':', '')}.json"
                os.replace(run_dir / RESULT_FILE, kept)
                shutil.rmtree(checkpoints, ignore_errors=True)
                print(f"force=true: previous result kept as {kept}", flush=True)
            return RunPlan(skip=False)
        if same:
            return RunPlan(skip=True, previous=previous)
        changed = ", ".join(_diff_keys(previous.get("config", {}), config)[:5]) or "unknown keys"
        raise BoraError(
            f"{run_dir} already holds a successful run of a different config (differs at: {changed}); "
            "choose another experiment_name=... or pass force=true to replace it"
        )
    if not same and checkpoints.exists():
        # Checkpoints of an unfinished run with another config cannot be resumed; they are not a result.
        if apply:
            print(f"discarding checkpoints of an unfinished run with a different config in {checkpoints}", flush=True)
            shutil.rmtree(checkpoints)
        return RunPlan(skip=False, previous=previous)
    return RunPlan(skip=False, previous=previous, checkpoint=latest_checkpoint(checkpoints))


def environment() -> dict[str, Any]:
    """Package versions, git commit and hardware: what a reader needs to trust or reproduce a number."""
    import torch

    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    hardware: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        hardware["cuda"] = torch.version.cuda
    return {"versions": versions, "git": git_state(), "hardware": hardware, "command": sys.argv}


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
