"""The records of scripts/gpu_check.sh's first step: `bora train` end to end on the card (issue 34 item 7).

    python scripts/gpu_train_check.py OUT_DIR DEVICE PRECISION

Reads every result.json under OUT_DIR and checks what each record says ran: status success, the precision and the
adapter dtype asked for (bf16 on a GPU), the device's peak memory, the generation engine and, on a GPU, the card's
name. Prints one line per run; exits 1 naming the first check that failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def problems(record: dict, device: str, precision: str) -> list[str]:
    found = []
    if record.get("status") != "success":
        found.append(f"status {record.get('status')}: {(record.get('error') or {}).get('message')}")
    if record.get("precision", {}).get("used") != precision:
        found.append(f"trained in {record.get('precision')}, not {precision}")
    if record.get("adapter_dtype", {}).get("used") != precision:
        found.append(f"adapters held {record.get('adapter_dtype')}, not {precision}")
    peak = record.get("peak_memory", {}).get("train", {})
    if peak.get("device") != device or not peak.get("bytes"):
        found.append(f"no {device} peak memory recorded for training ({peak})")
    if record.get("generation_engine", {}).get("used") not in ("padded", "continuous"):
        found.append(f"no generation engine recorded ({record.get('generation_engine')})")
    if device == "cuda" and not record.get("hardware", {}).get("gpus"):
        found.append("no GPU named in the record's hardware")
    return found


def main(out_dir: Path, device: str, precision: str) -> int:
    paths = sorted(out_dir.rglob("result.json"))
    if not paths:
        print(f"error: no result.json under {out_dir}: the runs did not start", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        record = json.loads(path.read_text())
        peak = record.get("peak_memory", {}).get("train", {}).get("bytes") or 0
        headline = record.get("headline") or {}
        hardware = record.get("hardware", {})
        print(
            f"{record.get('model')} {record.get('method')}: {record.get('status')}, "
            f"{(record.get('train') or {}).get('global_steps')} steps, "
            f"precision {record.get('precision', {}).get('used')}, "
            f"adapters {record.get('adapter_dtype', {}).get('used')}, peak {peak / 2**30:.2f} GiB on {device}, "
            f"engine {record.get('generation_engine', {}).get('used')}, "
            f"{headline.get('metric')}={headline.get('value')}, "
            f"hardware {hardware.get('gpus') or hardware.get('machine')}"
        )
        for problem in problems(record, device, precision):
            print(f"error: {record.get('model')}: {problem}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
