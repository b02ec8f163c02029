"""The real conf/ tree composes for every model x method x task, and bad input fails with one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest

from bora.cli import load_config, preflight
from bora.errors import BoraError
from bora.paths import CONF_DIR

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
PAPER_MODELS = ["roberta-base", "roberta-large", "gemma-7b", "llama-3-8b", "qwen2.5-14b"]


def test_required_model_configs_exist():
    for name in PAPER_MODELS + ["tiny-encoder", "tiny-decoder", "minilm", "smollm2-135m"]:
        assert name in MODELS


@pytest.mark.parametrize("model", MODELS)
def test_every_model_maps_the_paper_letters(model):
    cfg = load_config([f"model={model}"])
    assert set(cfg.model.targets) == set("QKVOGUD")
    assert all(cfg.model.targets[letter] for letter in "QKV")
    assert cfg.model.kind in ("encoder", "decoder")
    assert cfg.model.arch["model_type"]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_and_feeds_the_trainer(task):
    cfg = load_config([f"task={task}"])
    assert cfg.trainer.epochs == cfg.task.epochs
    assert cfg.trainer.batch_size == cfg.task.batch_size
    assert cfg.method.targets == cfg.task.default_targets
    assert cfg.trainer.lr == cfg.model.lr


@pytest.mark.parametrize("method", METHODS)
def test_every_method_composes(method):
    cfg = load_config([f"method={method}", "model=llama-3-8b", "task=math"])
    assert cfg.method.name
    assert cfg.run_dir.startswith(cfg.output_dir)


def test_paper_settings_reach_the_trainer():
    rte = load_config(["model=roberta-base", "task=rte"])
    assert (rte.trainer.lr, rte.trainer.epochs, rte.trainer.batch_size) == (3e-4, 10, 32)
    assert (rte.trainer.warmup_ratio, rte.trainer.precision, rte.method.targets) == (0.03, "fp32", "QV")
    assert load_config(["model=roberta-large", "task=rte"]).trainer.lr == 1e-4
    math = load_config(["model=llama-3-8b", "task=math", "method=bora"])
    assert (math.trainer.lr, math.trainer.warmup_steps, math.trainer.batch_size) == (1e-4, 100, 16)
    assert (math.trainer.precision, math.method.targets, math.method.alpha) == ("bf16", "QKV", 16)
    assert load_config(["method=lora", "method.r=32"]).method.alpha == 64  # alpha = 2r follows r


def test_run_dir_is_a_deterministic_function_of_the_config():
    a = load_config(["model=llama-3-8b", "task=math", "method=bora", "seed=2", "experiment_name=x"])
    assert a.run_dir.endswith("x/llama-3-8b/math/bora_r8_b16_a16_d0.05_QKV/seed=2")
    assert load_config(["method=bora", "method.use_exp=false"]).run_dir != load_config(["method=bora"]).run_dir
    assert a.run_dir == load_config(["model=llama-3-8b", "task=math", "method=bora", "seed=2", "experiment_name=x"]).run_dir


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["method=lorra"], "unknown method 'lorra'; choose one of:"),
        (["model=gpt9"], "unknown model 'gpt9'; choose one of:"),
        (["task=glue9"], "unknown task 'glue9'; choose one of:"),
        (["trainer.lrr=1"], "unknown config key 'trainer.lrr'"),
        (["method.block=4"], "unknown config key 'method.block'"),
        (["seed=abc"], "bad value for 'seed'"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(overrides, expected):
    with pytest.raises(BoraError) as info:
        load_config(overrides)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_preflight_checks_every_value_of_a_sweep():
    preflight(["-m", "method=lora,bora", "seed=0,1"])
    with pytest.raises(BoraError, match="unknown method 'dorra'"):
        preflight(["-m", "method=lora,dorra", "seed=0,1"])


def test_train_cli_exits_nonzero_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bora.train", "method=lorra"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown method 'lorra'" in result.stderr


def test_slurm_launcher_config_composes_and_validates():
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from omegaconf import OmegaConf

    cfg = load_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    # Merging onto the plugin's own schema validates every key and type we set.
    merged = OmegaConf.merge(OmegaConf.structured(SlurmQueueConf), OmegaConf.masked_copy(launcher, [
        k for k in launcher if k not in ("_target_", "submitit_folder")]))
    assert merged.gpus_per_node == 1 and merged.partition == "gpu"
    assert load_config(["hydra/launcher=local"], hydra=True).hydra.launcher.n_jobs == 2


def test_conf_groups_are_named_after_the_sweep_axes():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"model", "method", "task", "trainer", "logger", "experiment", "hydra"} <= groups
    assert (Path(CONF_DIR) / "hydra" / "launcher").is_dir()
