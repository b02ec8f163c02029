"""The real conf/ tree composes for every model x method x task, and bad input fails with one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bora.config import load_config, resolved
from bora.config.identity import group_identity, run_identity
from bora.config.schema import non_identity_keys
from bora.config.sweep import preflight
from bora.errors import BoraError
from bora.paths import CONF_DIR, PROJECT_ROOT
from bora.plan import plan
from bora.tasks.sources import data_record

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
    identity = run_identity(resolved(a))
    assert a.run_dir.endswith(f"x/llama-3-8b/math/bora_r8_b16_a16_d0.05_QKV/seed=2-{identity[:8]}")
    assert load_config(["method=bora", "method.use_exp=false"]).run_dir != load_config(["method=bora"]).run_dir
    assert (
        a.run_dir
        == load_config(["model=llama-3-8b", "task=math", "method=bora", "seed=2", "experiment_name=x"]).run_dir
    )


@pytest.mark.parametrize(
    "override",
    [
        "trainer.lr=1e-3",
        "trainer.epochs=3",
        "task.max_length=32",
        "method.index_seed=2",
        "model.lr=1e-2",
        "trainer.warmup_ratio=0.1",
        "task.max_train_samples=100",
        "trainer.max_grad_norm=0.5",
        "model.init_seed=1",
    ],
)
def test_every_key_that_changes_a_result_changes_the_run_dir(override):
    base = ["method=sbora-fa"] if override.startswith("method.index_seed") else []
    assert load_config([*base, override]).run_dir != load_config(base).run_dir


@pytest.mark.parametrize(
    "override",
    [
        "trainer.logging_steps=3",
        "trainer.save_steps=7",
        "trainer.dataloader_workers=1",
        "logger=wandb",
        "force=true",
        "save_adapter=false",
        "trainer.torch_threads=1",
        "task.data_dir=/elsewhere/glue",
        "trainer.device=cpu",
    ],
)
def test_what_cannot_change_a_result_is_not_identity(override):
    """Location, logging and checkpoint cadence are not identity: the same run, the same directory."""
    assert load_config([override]).run_dir == load_config([]).run_dir


def test_the_same_data_through_another_spelling_of_its_path_is_the_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "glue").symlink_to(PROJECT_ROOT / "data" / "toy" / "glue")
    relative = load_config(["task.data_dir=glue"])
    absolute = load_config([f"task.data_dir={PROJECT_ROOT / 'data' / 'toy' / 'glue'}"])
    assert relative.run_dir == absolute.run_dir
    assert data_record(resolved(relative)["task"]) == data_record(resolved(absolute)["task"])  # checksums, no paths


def test_target_letters_in_any_order_or_repeated_are_one_run():
    runs = {spelling: load_config([f"method.targets={spelling}"]) for spelling in ("QV", "VQ", "QQV", "VQV")}
    assert len({cfg.run_dir for cfg in runs.values()}) == 1 and runs["VQ"].run_dir.split("/")[-2].endswith("_QV")
    assert len({run_identity(resolved(cfg)) for cfg in runs.values()}) == 1
    assert load_config(["method.targets=Q"]).run_dir != runs["QV"].run_dir  # other modules: another run


def test_identity_is_the_same_from_typed_and_plain_configs():
    typed = resolved(load_config(["method=bora"]))
    plain = json.loads(json.dumps(typed))
    plain["method"]["alpha"] = int(plain["method"]["alpha"])  # 16 from plain YAML, 16.0 from the schema
    assert run_identity(plain) == run_identity(typed)
    assert group_identity({**typed, "seed": 5}) == group_identity(typed) != run_identity(typed)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.batch_size=0", "trainer.batch_size=0: must be >= 1"),
        ("trainer.grad_accum=0", "trainer.grad_accum=0: must be >= 1"),
        ("seed=-1", "seed=-1: must be in [0, 2**32)"),
        ("trainer.logging_steps=0", "trainer.logging_steps=0: must be >= 1"),
        ("trainer.lr_scheduler=nosuch", "'trainer.lr_scheduler': Invalid value 'nosuch', expected one of [linear,"),
        ("trainer.eval_batch_size=0", "trainer.eval_batch_size=0: must be >= 1"),
        ("task.max_eval_samples=0", "task.max_eval_samples=0: must be >= 1"),
        ("task.max_eval_samples=-1", "task.max_eval_samples=-1: must be >= 1"),
        ("task.max_new_tokens=0", "task.max_new_tokens=0: must be >= 1"),
        ("trainer.lr=0", "trainer.lr=0.0: must be > 0"),
        ("trainer.epochs=0", "trainer.epochs=0.0: must be > 0"),
        ("task.max_length=0", "task.max_length=0: must be >= 8"),
        ("model.dtype=float64", "'model.dtype': Invalid value 'float64', expected one of [float32, bfloat16, float16]"),
        ("trainer.precision=fp8", "'trainer.precision': Invalid value 'fp8'"),
        ("method.dropout=1.5", "method.dropout=1.5: must be in [0, 1)"),
        ("trainer.warmup_ratio=1.5", "trainer.warmup_ratio=1.5: must be in [0, 1)"),
        ("trainer.lr=nan", "trainer.lr=nan: must be a finite number"),
    ],
)
def test_every_range_and_choice_is_checked_at_composition(override, expected):
    with pytest.raises(BoraError) as info:
        load_config([override])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_epochs_zero_is_fine_when_max_steps_is_set():
    assert load_config(["trainer.epochs=0", "trainer.max_steps=5"]).trainer.max_steps == 5
    assert load_config(["trainer.epochs=0", "trainer.max_steps=0"]).trainer.max_steps == 0  # untrained: no epochs
    with pytest.raises(BoraError, match="trainer.max_steps=-2: must be -1, 0 or >= 1"):
        load_config(["trainer.max_steps=-2"])


def test_scheduler_choices_are_transformers_scheduler_names():
    from transformers import SchedulerType

    from bora.config.schema import Scheduler

    assert {s.value for s in Scheduler} <= {s.value for s in SchedulerType}


def test_schema_names_its_non_identity_keys():
    assert {"output_dir", "run_dir", "logger", "task.data_dir", "trainer.logging_steps"} <= non_identity_keys()
    assert not {"seed", "trainer.lr", "method.r", "task.max_length"} & non_identity_keys()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["method=lorra"], "unknown method 'lorra'; choose one of:"),
        (["model=gpt9"], "unknown model 'gpt9'; choose one of:"),
        (["task=glue9"], "unknown task 'glue9'; choose one of:"),
        (["trainer.lrr=1"], "unknown config key 'trainer.lrr'; did you mean 'trainer.lr'?"),  # no + too
        (["method.block=4"], "unknown config key 'method.block'"),
        (["+trainer.lrr=1e-9"], "unknown config key 'trainer.lrr'; did you mean 'trainer.lr'?"),  # + adds keys
        (["+method.blokcs=4"], "unknown config key 'method.blokcs'; did you mean 'method.blocks'?"),
        (["+speed=1"], "unknown config key 'speed'; did you mean 'seed'?"),
        (["seed=abc"], "bad value for 'seed'"),
        (["experiment_name=../../escape"], "bad value experiment_name=../../escape: must be one folder name"),
        (["model.name=../../../../esc1"], "bad value model.name=../../../../esc1: must be one folder name"),
        (["task.name=../../../../esc2"], "bad value task.name=../../../../esc2: must be one folder name"),
        (["task.name=a/b"], "bad value task.name=a/b: must be one folder name"),
        (["experiment_name=" + "a" * 300], "is 300 bytes; must be at most 200"),
        (["experiment_name=ünïcødé_日本"], "quote it, e.g. \"experiment_name='ünïcødé_日本'\" in a shell"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(overrides, expected):
    with pytest.raises(BoraError) as info:
        load_config(overrides)
    message = str(info.value)
    assert expected in message and "\n" not in message


@pytest.mark.parametrize(
    "args, expected",
    [
        (["task=toy-math"], "bad pairing model=tiny-encoder (an encoder) with task=toy-math (a generation task)"),
        (["model=tiny-decoder"], "bad pairing model=tiny-decoder (a decoder) with task=toy-cls (a classification"),
        (["-m", "model=tiny-encoder,tiny-decoder"], "bad pairing model=tiny-decoder (a decoder) with task=toy-cls"),
        (
            ["model=tiny-decoder", "task=toy-math", "task.generation_engine=continuous", "task.num_beams=4"],
            "bad pairing task.generation_engine=continuous with task.num_beams=4",
        ),
    ],
)
def test_values_that_cannot_run_together_stop_a_run_or_sweep_at_start_up(args, expected):
    with pytest.raises(BoraError) as info:
        preflight(args)
    assert expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BoraError, match="bad pairing"):
        plan([a for a in args if a != "-m"], with_params=False)


def test_a_typo_inside_an_experiment_file_names_the_key_and_the_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  lrr: 0.1\n")
    with pytest.raises(BoraError) as info:
        load_config([f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"])
    assert str(info.value).startswith("unknown config key 'trainer.lrr' in experiment/typo.yaml")
    assert "did you mean 'trainer.lr'?" in str(info.value) and "\n" not in str(info.value)


def test_a_quoted_unicode_experiment_name_is_one_folder():
    cfg = load_config(["experiment_name='ünïcødé_日本'"])
    assert Path(cfg.run_dir).relative_to(cfg.output_dir).parts[0] == "ünïcødé_日本"


def test_free_form_dicts_take_added_keys():
    assert load_config(["+model.arch.hidden_act=gelu"]).model.arch.hidden_act == "gelu"


def test_log_lines_name_the_run_as_its_directory_ends():
    """Side-by-side jobs of a sweep over a trainer value log under labels that tell them apart."""
    labels = set()
    for lr in ("0.001", "0.002"):
        cfg = load_config([f"trainer.lr={lr}"], hydra=True)
        label = cfg.hydra.job_logging.formatters.simple.format
        assert f"{Path(cfg.run_dir).name}]" in label
        labels.add(label)
    assert len(labels) == 2


def test_preflight_refuses_zero_parallel_jobs():
    with pytest.raises(BoraError, match=r"hydra.launcher.n_jobs=0: must be >= 1"):
        preflight(["-m", "experiment=smoke", "hydra/launcher=local", "hydra.launcher.n_jobs=0"])
    preflight(["-m", "experiment=smoke", "hydra/launcher=local", "hydra.launcher.n_jobs=-1"])  # joblib: every CPU
    preflight(["-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "trainer.lr=0.001,0.002"])  # a value sweep


def test_preflight_checks_every_value_of_a_sweep():
    preflight(["-m", "method=lora,bora", "seed=0,1"])
    with pytest.raises(BoraError, match="unknown method 'dorra'"):
        preflight(["-m", "method=lora,dorra", "seed=0,1"])
    with pytest.raises(BoraError, match="trainer.lr=0.0: must be > 0"):  # a value sweep, not only config groups
        preflight(["-m", "trainer.lr=1e-3,0", "seed=0,1"])
    with pytest.raises(BoraError, match="seed=-2"):
        preflight(["-m", "experiment=smoke", "seed=0,-2"])


@pytest.mark.parametrize(
    "override",
    [
        "trainer.batch_size=0",
        "trainer.lr_scheduler=nosuch",
        "model.dtype=x",
        "task.max_new_tokens=0",
        "+trainer.lrr=1e-9",
    ],
)
def test_train_stops_at_start_up_before_any_training(tmp_path, override):
    """A bad value stops before a model is built: one line naming it, and nothing written under the output folder
    (no run directory, so no checkpoint, no logged step, no result)."""
    result = subprocess.run(
        [sys.executable, "-m", "bora.train", override],
        capture_output=True,
        text=True,
        env={**os.environ, "BORA_OUTPUT_DIR": str(tmp_path / "outputs")},
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert override.split("=")[0].lstrip("+") in result.stderr
    assert "loss" not in result.stdout + result.stderr
    assert not (tmp_path / "outputs").exists()


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
    merged = OmegaConf.merge(
        OmegaConf.structured(SlurmQueueConf),
        OmegaConf.masked_copy(launcher, [k for k in launcher if k not in ("_target_", "submitit_folder")]),
    )
    assert merged.gpus_per_node == 1 and merged.partition == "gpu"
    assert load_config(["hydra/launcher=local"], hydra=True).hydra.launcher.n_jobs == 2


def test_conf_groups_are_named_after_the_sweep_axes():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"model", "method", "task", "trainer", "logger", "experiment", "hydra"} <= groups
    assert (Path(CONF_DIR) / "hydra" / "launcher").is_dir()


def test_a_field_added_later_leaves_identities_unchanged_at_its_default(monkeypatch):
    from bora.config import identity

    config = resolved(load_config([]))
    before = run_identity(config)
    grown = json.loads(json.dumps(config))
    grown["trainer"]["new_knob"] = 7  # as if the schema had gained trainer.new_knob (default 7, added=True)
    monkeypatch.setattr(identity, "_ADDED", {**identity._ADDED, "trainer.new_knob": 7})
    assert run_identity(grown) == before
    grown["trainer"]["new_knob"] = 8
    assert run_identity(grown) != before


def test_identities_are_stable_across_releases():
    """A golden identity: if this changes, every recorded result leaves its table (mark new fields added=True)."""
    config = resolved(
        load_config(["experiment=cpu-glue", "task=cpu/mrpc", "+experiment/rows/main=bora-r8-b16", "seed=0"])
    )
    assert run_identity(config)[:8] == "2532c35a"
