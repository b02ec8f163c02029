"""scripts/gpu_check.sh's first step, `bora train` end to end on the device, as a CPU dry run (fp32, the LLaMA-3-8B
shaped model narrowed): both runs succeed and scripts/gpu_train_check.py finds in each record what the step needs
to show on a GPU (precision and adapter dtype as asked, the device's peak memory, the generation engine)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NARROW = "model.arch.hidden_size=64 model.arch.intermediate_size=128 model.arch.vocab_size=512"


def test_the_trainer_step_runs_both_models_and_checks_their_records(tmp_path):
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "TRAIN_PRECISION": "fp32",
        "ONLY_TRAIN": "1",
        "PYTHON": sys.executable,
        "LLAMA_EXTRA": NARROW,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "gpu_check.log").read_text()
    summary = [line for line in log.splitlines() if line.startswith(("tiny-decoder bora:", "llama-3-8b bora:"))]
    assert len(summary) == 2 and all("success, 4 steps, precision fp32, adapters fp32" in s for s in summary)
    records = [json.loads(p.read_text()) for p in (tmp_path / "train").rglob("result.json")]
    llama = next(r for r in records if r["model"] == "llama-3-8b")
    assert llama["config"]["model"]["arch"]["num_hidden_layers"] == 2  # the paper model's shape, 2 of its layers

    # the checker fails on a record that did not do what the step asks
    llama_path = next(p for p in (tmp_path / "train").rglob("result.json") if "llama-3-8b" in str(p))
    llama["adapter_dtype"]["used"] = "bf16"
    llama_path.write_text(json.dumps(llama))
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_train_check.py"), str(tmp_path / "train"), "cpu", "fp32"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1 and "llama-3-8b: adapters held" in check.stderr
