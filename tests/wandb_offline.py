"""Read an offline W&B run's ``run-<id>.wandb`` file back (tests only): W&B's datastore is a 7-byte header, then
leveldb-log blocks of 32 KiB holding chunks (a 7-byte header each: CRC, length, type FULL / FIRST / MIDDLE / LAST) of
protobuf ``Record`` messages."""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def offline_records(path: Path) -> list:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B datastore"
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):
        left = BLOCK - offset % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if kind == 0 and length == 0:
            break
        pending += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_run(run_dir: Path) -> dict:
    """The run's group, job type, config (every update, top-level key -> value) and artifacts (name, type, files)."""
    [path] = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    found = {"group": None, "job_type": None, "config": {}, "artifacts": []}
    for record in offline_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["group"], found["job_type"] = record.run.run_group, record.run.job_type
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            if kind == "artifact":
                files = {entry.path: entry.local_path for entry in record.artifact.manifest.contents}
                found["artifacts"].append({"name": record.artifact.name, "type": record.artifact.type, "files": files})
            continue
        for item in updates:
            found["config"][item.key] = json.loads(item.value_json)
    return found
