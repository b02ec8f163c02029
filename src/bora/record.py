"""The run record: one typed ``result.json`` per run, written by ``bora.train`` and read by everything else.

``RunRecord`` is the single definition of the file's shape (pydantic validates it both ways): plan, the tables,
the claims and the tests all read runs through ``read_record``. A file that is not valid JSON, has the wrong shape,
holds a NaN, or has another ``schema_version`` is ``Unreadable`` (with the reason), never half-read.

Light on purpose (pydantic only): rendering tables from records must not import torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

RESULT_FILE = "result.json"
SCHEMA_VERSION = 2  # 1: before run identity (directories without the identity suffix)


class Status(str, Enum):
    RUNNING = "running"  # in progress, or killed without a chance to say so (SIGKILL, power loss)
    SUCCESS = "success"  # trained and evaluated; the only status that enters a table
    FAILED = "failed"  # an error, or diverged (non-finite / exploding loss, non-finite weights or metrics)
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM (e.g. SLURM pre-emption); a rerun resumes from its checkpoint

    def __str__(self) -> str:
        return self.value


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Headline(_Part):
    metric: str
    value: float | None  # None when the metric is undefined for this run (see RunRecord.undefined_metrics)


class LossPoint(_Part):
    step: int
    loss: float
    grad_norm: float | None = None  # the step's gradient norm before clipping (logged steps of training)


class Validation(_Part):
    """The held-out examples of ``task.val_size``: their loss at each checkpoint, and the one training ended on."""

    examples: int
    loss_history: list[LossPoint] = []
    best_step: int | None = None
    best_loss: float | None = None


class TrainStats(_Part):
    wall_time_s: float
    # CPU time of this process while it trained (user + system, summed over its threads): unlike wall time, another
    # job on the same machine does not inflate it (None in records from before it was measured)
    cpu_time_s: float | None = None
    global_steps: int
    epochs: float
    examples: int
    mean_loss: float | None  # over every step of the run, resumed attempts included
    resumed_from: str | None = None
    # trainer.compile: backend, mode, graph breaks, graphs compiled, compile seconds, first and later step times
    # (bora.training.CompileProbe); None for an eager run
    compile: dict[str, Any] | None = None
    loss_history: list[LossPoint] = []
    validation: Validation | None = None  # task.val_size > 0 only


class Memory(_Part):
    device: str
    bytes: int
    measure: str


class ErrorInfo(_Part):
    type: str
    message: str
    traceback: str | None = None
    step: int | None = None  # the optimizer step it happened at, when known


class RunRecord(_Part):
    schema_version: int = SCHEMA_VERSION
    status: Status
    experiment: str
    model: str
    method: str
    task: str
    seed: int
    run_dir: str
    identity: str  # bora.config.identity.run_identity of `config`
    group: str  # the same without the seed: the runs averaged into one table cell
    config: dict[str, Any]  # the resolved config
    started_at: str
    finished_at: str | None = None
    data: dict[str, Any] = {}  # what data the run read: source and SHA-256 of each local file
    # {sub task: {metric: value}}, natural units; None where the metric is undefined (reason in undefined_metrics)
    metrics: dict[str, dict[str, float | None]] | None = None
    undefined_metrics: dict[str, str] = {}  # "<sub task>/<metric>" -> why it has no value
    headline: Headline | None = None
    adapter_params: int | None = None
    trainable_params: int | None = None
    adapted_modules: int | None = None
    train: TrainStats | None = None
    eval: dict[str, float] | None = None
    peak_memory: dict[str, Memory] = {}
    precision: dict[str, str] = {}  # requested and used (a bf16 default falls back to fp32 on a CPU)
    # requested (trainer.adapter_dtype) and used: the dtype the adapter parameters held when training started
    adapter_dtype: dict[str, str] = {}
    # generation tasks: requested (task.generation_engine) and used (auto: continuous on a CPU, padded on a GPU)
    generation_engine: dict[str, str] = {}
    adapter_stats: dict[str, Any] = {}  # e.g. BoRA's Sigma per layer (bora.adapters.stats)
    notices: list[str] = []  # warnings a reader of the number should see
    error: ErrorInfo | None = None
    replaces: str | None = None  # a forced rerun: the previous success, kept beside as this file
    wandb_run_id: str | None = None
    versions: dict[str, str] = {}
    lock: dict[str, Any] = {}  # the dependency lock's hashes and whether the environment was it (bora.lockfile)
    git: dict[str, Any] = {}
    hardware: dict[str, Any] = {}
    command: list[str] = []

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"


class Unreadable(Exception):
    """A result.json that cannot be trusted: its path and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def parse_record(payload: Any, path: Path | str = RESULT_FILE) -> RunRecord:
    if not isinstance(payload, dict):
        raise Unreadable(Path(path), f"expected a JSON object, found {type(payload).__name__}")
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise Unreadable(
            Path(path),
            f"schema_version {version!r}, this bora reads {SCHEMA_VERSION} (another bora version wrote it: "
            "move it away to rerun the run)",
        )
    try:
        record = RunRecord.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unreadable(Path(path), f"{where}: {first['msg']}") from None
    problem = success_problem(record)
    if problem is not None:
        raise Unreadable(
            Path(path), f"it says success but {problem}: edited by hand or corrupt; move it away to rerun the run"
        )
    return record


def success_problem(record: RunRecord) -> str | None:
    """Why a record that says ``success`` cannot be one, or None: a success holds its metrics, a headline that is
    the metric the task reports (``metrics["average"]`` for several test sets, else ``metrics[task]``; what
    ``Task.headline`` takes), and the identity of its own config. A file edited by hand (a failed run relabelled,
    a changed identity or number) fails one of these, so it is unreadable to every reader (plan, train, tables)
    instead of a table cell or a run skipped forever."""
    if record.status is not Status.SUCCESS:
        return None
    if not record.metrics:
        return "it holds no metrics"
    if record.headline is None:
        return "it holds no headline"
    source = record.metrics.get("average", record.metrics.get(record.task))
    if source is None or record.headline.metric not in source:
        return f"its metrics hold no {record.headline.metric} for the headline"
    if source[record.headline.metric] != record.headline.value:
        return (
            f"its headline {record.headline.metric}={record.headline.value} is not its metrics' "
            f"{source[record.headline.metric]}"
        )
    from bora.config.identity import run_identity

    expected = run_identity(record.config)
    if record.identity != expected:
        return f"its identity {record.identity} is not its config's ({expected})"
    return None


def read_record(path: Path | str) -> RunRecord | None:
    """The record at ``path`` (a result.json or a run directory); None if there is none; ``Unreadable`` if bad."""
    path = Path(path)
    if path.is_dir() or path.name != RESULT_FILE:
        path = path / RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise Unreadable(path, f"cannot read it ({error})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise Unreadable(path, f"not valid JSON ({error.msg} at line {error.lineno}); truncated?") from None
    return parse_record(payload, path)


def write_record(path: Path | str, record: RunRecord) -> None:
    """Validate, then write atomically: a temporary file in the same folder, then rename (readers never see half a
    file). A NaN anywhere is an error here, not a bare ``NaN`` in JSON."""
    path = Path(path)
    if path.is_dir() or path.name != RESULT_FILE:
        path = path / RESULT_FILE
    text = RunRecord.model_validate(record.model_dump()).to_json()
    write_text_atomic(path, text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


STALE_TEMP_S = 60  # a temporary file this old was left by a writer that was killed (a write takes milliseconds)


def remove_stale_temporaries(path: Path) -> None:
    """Delete the ``.<name>.*`` temporaries of ``path`` that killed writers left behind."""
    cutoff = time.time() - STALE_TEMP_S
    for stale in path.parent.glob(f".{path.name}.*"):
        with contextlib.suppress(OSError):
            if stale.is_file() and stale.stat().st_mtime < cutoff:
                stale.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and one rename: a reader sees the old or the new text, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would give; mkstemp's 0600 would hide results from a group
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
