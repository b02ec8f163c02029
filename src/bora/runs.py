"""A run directory's life: who may write it (a lock), what to do in it (skip, resume, start, rerun beside), and
how a forced rerun replaces a success only once it has succeeded itself.

The directory is a function of the run's identity (``conf/config.yaml``: ``.../seed=<seed>-<identity[:8]>``), so
two different configs never share one. Inside it:

    result.json                  the record (bora.record.RunRecord): the source of truth for every table
    adapter/  predictions/       what the run produced
    checkpoints/                 while unfinished only: the trainable tensors, optimizer and RNG state to resume
    .lock                        held by the one process training here (fcntl; released when it dies)
    .attempt/                    a forced rerun of a success, trained here until it succeeds, then moved in
    result.replaced-<time>.json, adapter.replaced-<time>/, ...   what a forced rerun replaced
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bora.config.identity import differing_keys, identity_values
from bora.distributed import world_size
from bora.errors import BoraError
from bora.integrity import safetensors_problem
from bora.lockfile import lock_state
from bora.paths import CHECKOUT
from bora.record import RESULT_FILE, RunRecord, Status, Unreadable, read_record

CHECKPOINTS = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"  # HF Trainer's folder name (not imported: transformers would slow bora.plan)
TRAINABLE_FILE = "trainable.safetensors"  # a checkpoint's trainable tensors (bora.training.AdapterTrainer)
ATTEMPT_DIR = ".attempt"
LOCK_FILE = ".lock"
PRODUCTS = ("adapter", "predictions")  # what a run writes besides result.json, kept with it when replaced
_PACKAGES = [
    "torch",
    "transformers",
    "datasets",
    "peft",
    "accelerate",
    "hydra-core",
    "omegaconf",
    "evaluate",
    "wandb",
    "safetensors",
    "tokenizers",
    "numpy",
    "pydantic",
    "bora",
]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- one process per run directory ---------------------------------------------------------------------------
class RunLock:
    """An exclusive ``fcntl`` lock on ``<run_dir>/.lock`` for as long as one process trains there.

    A second process waits for it (saying who holds it), then re-decides (usually: skip, the run is done). The
    kernel releases the lock when its holder dies, so a lock left by a killed process is simply taken over.
    Creating the directory and the lock file is also where an unwritable output folder is reported, in one line.
    """

    def __init__(self, run_dir: Path, wait: bool = True):
        self.run_dir = Path(run_dir)
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        path = self.run_dir / LOCK_FILE
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise unwritable(error, self.run_dir) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode(errors="replace").strip() or "another process"
            if not self.wait:
                os.close(self._fd)
                raise BoraError(f"{self.run_dir} is being trained by {holder}; wait for it or stop it") from None
            print(f"waiting: {self.run_dir} is being trained by {holder}", flush=True)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()} since {now()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def unwritable(error: OSError, where: Path) -> BoraError:
    """An OS error writing outputs as one line naming the path and the fix."""
    path = error.filename or where
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.ENOTDIR: "a part of it is a file, not a folder",
        errno.EEXIST: "a file is in the way",
    }.get(error.errno, error.strerror or str(error))
    fix = "free space or pass" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "pass"
    return BoraError(f"cannot write {path}: {reason}; {fix} a writable output_dir=... (BORA_OUTPUT_DIR)")


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}  # a write failed for the disk, not the code
MIN_FREE_BYTES = 20 * 2**20  # below this a run cannot even write its checkpoints and result: refuse to start


def check_writable(folder: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """Refuse, in one line naming the path, an output folder that cannot be written: a file in its way, a read-only
    or full disk. Called before anything writes below ``folder`` (Hydra's own job set-up included)."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise unwritable(OSError(errno.ENOTDIR, "not a directory", str(existing)), folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        raise unwritable(OSError(errno.EROFS if read_only else errno.EACCES, "not writable", str(existing)), folder)
    free = shutil.disk_usage(existing).free
    if free < min_free:
        error = OSError(errno.ENOSPC, "no space", str(existing))
        raise BoraError(
            f"{unwritable(error, folder)} ({free // 2**20} MiB free, a run needs at least {min_free // 2**20} MiB)"
        )


def disk_error(error: BaseException) -> OSError | None:
    """The OS error inside a failed write: an OSError of a full, read-only or forbidden disk, or the same reported
    by a library in its own words (safetensors: ``IoError(Os { code: 28, ... })``)."""
    if isinstance(error, OSError) and error.errno in DISK_ERRORS:
        return error
    text = str(error)
    for code in DISK_ERRORS:
        if f"code: {code}," in text or f"os error {code})" in text:
            return OSError(code, os.strerror(code))
    return None


# --- what to do in a run directory ----------------------------------------------------------------------------
@dataclass
class Decision:
    """What one invocation does: skip (``previous`` is the success), or train into ``work_dir`` (``run_dir``, or
    ``run_dir/.attempt`` for a forced rerun of a success), resuming from ``checkpoint`` if set."""

    skip: bool
    work_dir: Path
    previous: RunRecord | None = None
    checkpoint: Path | None = None
    wandb_run_id: str | None = None

    @property
    def replaces(self) -> RunRecord | None:
        """The success a forced rerun replaces once it has succeeded (None for an ordinary run)."""
        return self.previous if not self.skip and self.previous is not None and self.previous.ok else None


def read_existing(run_dir: Path) -> RunRecord | None:
    try:
        return read_record(run_dir)
    except Unreadable as error:
        raise BoraError(f"{error.path} is unreadable ({error.reason}); move it away to rerun this run") from None


def decide(run_dir: Path, identity: str, config: dict, force: bool, data: dict, apply: bool = True) -> Decision:
    """Skip a success of this identity; resume an unfinished run of it; with ``force``, rerun a success beside it.

    With ``apply=False`` (data-parallel ranks other than 0) the same decision is made without touching files.
    """
    run_dir = Path(run_dir)
    previous = read_existing(run_dir)
    if previous is not None and previous.identity != identity:
        changed = ", ".join(differing_keys(identity_values(previous.config), identity_values(config))[:5])
        if previous.ok:
            raise BoraError(
                f"{run_dir} already holds a successful run of a different config (differs at: "
                f"{changed or 'unknown keys'}); move it away or choose another output_dir"
            )
        if apply:  # an unfinished run of another config: its checkpoints cannot be resumed and are not a result
            shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
        return Decision(skip=False, work_dir=run_dir, wandb_run_id=new_wandb_id(identity))
    if previous is not None and previous.ok:
        changed = changed_data(previous.data, data)
        if changed and not force:
            raise BoraError(f"{run_dir} succeeded on other data ({changed} has changed since); force=true reruns it")
        if not force:
            return Decision(skip=True, work_dir=run_dir, previous=previous)
        attempt_dir = run_dir / ATTEMPT_DIR
        attempt = read_existing(attempt_dir)
        if attempt is not None and attempt.identity == identity and not attempt.ok:
            return Decision(
                skip=False,
                work_dir=attempt_dir,
                previous=previous,
                checkpoint=latest_checkpoint(attempt_dir / CHECKPOINTS),
                wandb_run_id=attempt.wandb_run_id or new_wandb_id(identity),
            )
        if apply:
            shutil.rmtree(attempt_dir, ignore_errors=True)
        return Decision(skip=False, work_dir=attempt_dir, previous=previous, wandb_run_id=new_wandb_id(identity))
    # Nothing yet, or unfinished (running = killed, failed, interrupted): resume from its last checkpoint if any.
    wandb_run_id = previous.wandb_run_id if previous is not None and previous.wandb_run_id else new_wandb_id(identity)
    return Decision(
        skip=False, work_dir=run_dir, checkpoint=latest_checkpoint(run_dir / CHECKPOINTS), wandb_run_id=wandb_run_id
    )


def reused(
    run_dir: Path,
    output_dir: Path,
    experiment_name: str,
    reuse_from: list[str],
    identity: str,
    data: dict | None = None,
) -> tuple[Path, RunRecord] | None:
    """(its directory, its record) of a success of ``identity`` on the same ``data`` at the same place in one of the
    ``reuse_from`` experiment folders (a study that shares runs with another, as cpu-ablations with cpu-glue), or
    None. Unreadable or other runs there, and runs on other data, are ignored: this run then trains in its own
    directory."""
    try:
        below = Path(run_dir).relative_to(Path(output_dir) / experiment_name)
    except ValueError:  # run_dir was set by hand, outside <output_dir>/<experiment_name>
        return None
    for other in reuse_from:
        where = Path(output_dir) / other / below
        try:
            record = read_record(where)
        except Unreadable:
            continue
        if (
            record is not None
            and record.ok
            and record.identity == identity
            and not (data is not None and changed_data(record.data, data))
        ):
            return where, record
    return None


def new_wandb_id(identity: str) -> str:
    """A fresh W&B run id per attempt (a resumed attempt keeps its own; a forced rerun gets a new one)."""
    return f"{identity[:8]}-{secrets.token_hex(3)}"


def changed_data(before: dict, now: dict) -> str | None:
    """The first data file whose checksum differs between two runs' ``data`` records (None if none differs)."""
    old, new = before.get("sha256") or {}, now.get("sha256") or {}
    for name in sorted(set(old) & set(new)):
        if old[name] != new[name]:
            return name
    return None


def kept_name(replaced: RunRecord) -> str:
    """The file name a forced rerun keeps the success it replaces under (``result.replaced-<time>.json``)."""
    return f"result.replaced-{_stamp(replaced)}.json"


def _stamp(replaced: RunRecord) -> str:
    return (replaced.finished_at or now()).replace(":", "")


def promote(attempt_dir: Path, run_dir: Path, replaced: RunRecord, old_log_bytes: int = 0) -> Path:
    """Move a succeeded forced rerun into its run directory; keep everything of the run it replaces beside it.

    The old result.json stays in place until the new one replaces it in a single rename, so a reader always sees
    one complete success. What the old run wrote is kept as ``<name>.replaced-<time>`` (adapter, predictions, any
    file the rerun also writes), its W&B runs stay in ``wandb/`` beside the new one (``make wandb-sync`` finds
    both), and the first ``old_log_bytes`` of train.log (the log the rerun appended to) are copied out as
    ``train.log.replaced-<time>``. Returns the path the old result was kept as.
    """
    stamp = _stamp(replaced)
    kept = run_dir / kept_name(replaced)
    shutil.copy2(run_dir / RESULT_FILE, kept)
    log = run_dir / "train.log"
    if old_log_bytes and log.is_file():
        with open(log, "rb") as source:
            (run_dir / f"train.log.replaced-{stamp}").write_bytes(source.read(old_log_bytes))
    for name in PRODUCTS:
        if (run_dir / name).exists():
            os.replace(run_dir / name, run_dir / f"{name}.replaced-{stamp}")
    temporaries = f".{RESULT_FILE}."  # write_record's, left by a writer that was killed: never results
    for item in attempt_dir.iterdir():
        if item.name in (RESULT_FILE, CHECKPOINTS) or item.name.startswith(temporaries):
            continue
        target = run_dir / item.name
        if item.is_dir() and target.is_dir() and not target.is_symlink():
            _merge(item, target, stamp)
            continue
        if target.exists() or target.is_symlink():
            os.replace(target, run_dir / f"{item.name}.replaced-{stamp}")
        os.replace(item, target)
    os.replace(attempt_dir / RESULT_FILE, run_dir / RESULT_FILE)
    shutil.rmtree(attempt_dir, ignore_errors=True)
    for stale in run_dir.glob(f"{temporaries}*"):  # this process holds the run's lock: no writer is mid-write
        stale.unlink(missing_ok=True)
    return kept


def _merge(source: Path, target: Path, stamp: str) -> None:
    """Move ``source``'s entries into ``target`` (wandb/: each attempt's offline-run-* side by side). A link of the
    old run is replaced (W&B's latest-run and debug.log pointers); any other clash keeps the old entry renamed."""
    for item in source.iterdir():
        existing = target / item.name
        if existing.is_symlink():
            existing.unlink()
        elif existing.exists():
            os.replace(existing, target / f"{item.name}.replaced-{stamp}")
        os.replace(item, existing)


# --- checkpoints ---------------------------------------------------------------------------------------------
def _is_complete(checkpoint: Path) -> bool:
    # HF's Trainer writes trainer_state.json after the weights, optimizer and RNG state, so a checkpoint whose
    # state file is missing or cut short was interrupted mid-write (e.g. the job was killed) and cannot resume.
    # Our checkpoints hold the trainable tensors in one safetensors file: a disk that filled up, or a copy cut
    # short, leaves it shorter than its header says.
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    weights = checkpoint / TRAINABLE_FILE
    return not weights.exists() or safetensors_problem(weights) is None


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder; half-written ones are skipped with a message."""
    steps = [(p.name.removeprefix(CHECKPOINT_PREFIX), p) for p in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")]
    for _, path in sorted(((int(step), p) for step, p in steps if step.isdigit()), reverse=True):
        if _is_complete(path):
            return path
        print(
            f"ignoring incomplete checkpoint {path} (no readable trainer_state.json, or {TRAINABLE_FILE} cut off)",
            flush=True,
        )
    return None


def status_of(run_dir: Path, identity: str, data: dict | None = None) -> str:
    """``done`` (a success of this identity), ``stale`` (a success on other ``data``: train refuses it, force=true
    reruns), ``missing``, ``failed``, ``interrupted``, ``unfinished`` (running, or killed), ``conflict`` (a success
    of another identity) or ``unreadable``: what ``bora.plan`` shows, by the rules ``decide`` applies."""
    try:
        record = read_record(run_dir)
    except Unreadable:
        return "unreadable"
    if record is None:
        return "missing"
    if record.ok:
        if record.identity != identity:
            return "conflict"
        return "stale" if data is not None and changed_data(record.data, data) else "done"
    return {Status.RUNNING: "unfinished"}.get(record.status, str(record.status))


# --- what a reader needs to trust a number -------------------------------------------------------------------
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
        "processes": world_size(),  # data-parallel ranks (torchrun); trainer.batch_size is the global batch
    }
    if torch.cuda.is_available():
        hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        hardware["cuda"] = torch.version.cuda
    return {
        "versions": versions,
        "lock": lock_state(CHECKOUT),
        "git": git_state(),
        "hardware": hardware,
        "command": list(sys.argv),
    }


SOURCE_PATHS = ("src", "conf", "scripts", "data/toy", "requirements", "pyproject.toml", "Makefile")


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether it had changes: edited tracked files, or files not yet added under
    ``SOURCE_PATHS`` (listed); an installed wheel has no checkout (both None)."""
    if CHECKOUT is None:
        return {"commit": None, "dirty": None}

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    # new, uncommitted code or configs change what ran as much as edited ones; new result files of a study in
    # progress (results/) do not, so only these folders count
    untracked = run("ls-files", "--others", "--exclude-standard", "--", *SOURCE_PATHS)
    if status is None or untracked is None:
        return {"commit": commit, "dirty": None}
    return {"commit": commit, "dirty": bool(status or untracked), "untracked": untracked.splitlines()[:20]}
