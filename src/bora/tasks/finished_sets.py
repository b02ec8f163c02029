"""Resumable evaluation: the test sets a run has decoded in full, so that an attempt interrupted in set 7 of 8
decodes only sets 7 and 8 when it resumes (8 commonsense sets of an 8B model are hours of generation).

Each finished set's predictions file is written whole (a temporary file, then an atomic rename), then entered in
``predictions/finished.json`` (atomically too) with its question count, the file's SHA-256 and a fingerprint of the
weights that produced it (every trainable tensor: adapters and head; the frozen base is the run's identity). A set is
reused only when all three still match, so predictions of other weights (a run restarted from scratch, a changed
file) are decoded again. The index is read once when evaluation starts, so every rank of a data-parallel run makes
the same choice; rank 0 alone writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from bora.record import write_text_atomic

INDEX = "finished.json"


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names and bytes of the model's trainable tensors, in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(str(param.dtype).encode())
            data = param.detach().to("cpu").contiguous().reshape(-1)
            digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FinishedSets:
    """The finished test sets of one evaluation in ``folder`` (a run's ``predictions/``), for ``fingerprint``."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint
        self.sets: dict[str, dict] = {}
        try:
            index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none yet, or unreadable: decode everything
        if isinstance(index, dict) and index.get("weights") == fingerprint and isinstance(index.get("sets"), dict):
            self.sets = index["sets"]

    def rows(self, name: str, count: int) -> list[dict] | None:
        """The predictions of set ``name`` when an earlier attempt finished it with these weights, else None."""
        entry = self.sets.get(name)
        path = self.folder / f"{name}.jsonl"
        if not isinstance(entry, dict) or entry.get("n") != count or not path.is_file():
            return None
        if file_sha256(path) != entry.get("sha256"):
            return None
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return rows if len(rows) == count else None

    def write(self, name: str, rows: list[dict]) -> None:
        """Write set ``name``'s predictions, then enter it as finished."""
        path = self.folder / f"{name}.jsonl"
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        self.sets[name] = {"n": len(rows), "sha256": file_sha256(path)}
        index = {"weights": self.fingerprint, "sets": self.sets}
        write_text_atomic(self.folder / INDEX, json.dumps(index, indent=1) + "\n")
