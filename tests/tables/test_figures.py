"""Figures: singular values of saved adapters (Figure 4) and accuracy against blocks (Figure 3(b)), as PNG files."""

import matplotlib
import matplotlib.axes
import matplotlib.ticker
import pytest
import torch
from synthetic_results import method, uniform_math, write_run

from bora.adapters import adapter_layers, inject, save_adapters
from bora.config import load_config, resolved
from bora.config.identity import group_identity, run_identity
from bora.models import build_from_arch
from bora.record import RunRecord, write_record
from bora.report.aggregate import load_results
from bora.report.figures import (
    THRESHOLD,
    figure4_runs,
    plot_figure3b,
    plot_spectra,
    query_layer_spectra,
    singular_values,
    spectra,
)
from bora.report.specs import SPECS
from bora.report.tables import compare


def _trained_like(model_name: str, task: str, *overrides: str):
    """A tiny model with adapters whose B factors are random (as after training), and its config."""
    cfg = load_config([f"model={model_name}", f"task={task}", *overrides])
    model = build_from_arch(cfg.model, num_labels=2 if task == "toy-cls" else None)
    inject(model, cfg.method, cfg.model.targets)
    torch.manual_seed(0)
    for _, layer in adapter_layers(model):
        torch.nn.init.normal_(layer.B, std=0.05)
    return cfg, model


@pytest.mark.parametrize(
    "overrides", [["method=lora", "method.r=4"], ["method=bora", "method.r=4", "method.blocks=8"], ["method=melora"]]
)
def test_factorised_singular_values_equal_a_full_svd(overrides):
    _, model = _trained_like("tiny-decoder", "toy-math", *overrides)
    for _, layer in adapter_layers(model):  # q (64 x 64) and the grouped k, v (32 x 64)
        with torch.no_grad():
            full = torch.linalg.svdvals(layer.delta_weight().double())
        fast = singular_values(layer)
        assert torch.allclose(fast.double(), full[: len(fast)], rtol=1e-5, atol=1e-6 * full[0])
        assert torch.all(full[len(fast) :] < 1e-6 * full[0])  # dW has no rank beyond its factors' (float32 noise)


def _saved_run(root, model_name, task, *overrides):
    cfg, model = _trained_like(model_name, task, *overrides, f"output_dir={root}", "experiment_name=fig")
    config = resolved(cfg)
    run_dir = root / "fig" / "run"
    save_adapters(model, run_dir / "adapter", cfg.method)
    write_record(
        run_dir,
        RunRecord(
            status="success",
            experiment="fig",
            model=cfg.model.name,
            task=cfg.task.name,
            method=cfg.method.name,
            seed=0,
            run_dir=str(run_dir),
            identity=run_identity(config),
            group=group_identity(config),
            config=config,
            started_at="2026-01-01T00:00:00+00:00",
            metrics={"average": {cfg.task.metric: 0.5}},
            headline={"metric": cfg.task.metric, "value": 0.5},
        ),
    )
    return run_dir, model


@pytest.mark.parametrize("model_name, task", [("tiny-decoder", "toy-math"), ("tiny-encoder", "toy-cls")])
def test_query_layer_spectra_of_a_saved_adapter(tmp_path, model_name, task):
    run_dir, model = _saved_run(tmp_path, model_name, task, "method=bora", "method.r=4", "method.blocks=8")
    frame = query_layer_spectra(run_dir)
    queries = [(name, layer) for name, layer in adapter_layers(model) if name in set(frame["module"])]
    assert len(frame) == 2 and len(queries) == 2 and all("q" in name for name, _ in queries)
    for (_, layer), (_, row) in zip(queries, frame.iterrows()):
        with torch.no_grad():
            delta = layer.delta_weight().double()
        assert row["above_threshold"] == int((torch.linalg.svdvals(delta) > THRESHOLD).sum()) > 4  # BoRA: rank > r
        assert row["sum_squared"] == pytest.approx(float(delta.pow(2).sum()), rel=1e-6)


def test_lora_effective_rank_is_its_rank_and_plots_render(tmp_path):
    run_dir, _ = _saved_run(tmp_path, "tiny-decoder", "toy-math", "method=lora", "method.r=4")
    frame = spectra(load_results(tmp_path))
    assert list(frame["above_threshold"]) == [4, 4] and set(frame["label"]) == {"LoRA r=4"}
    path = plot_spectra(frame, tmp_path / "out" / "spectra.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure3b_from_table9_runs(tmp_path):
    for seed, value in enumerate([0.68, 0.70]):
        write_run(tmp_path, "math", "llama-3-8b", "math", method("lora"), seed, uniform_math(value))
        write_run(tmp_path, "math", "llama-3-8b", "math", method("bora", blocks=2), seed, uniform_math(value + 0.01))
    frame = compare(SPECS["table9"], load_results(tmp_path), planned=3)
    ours = frame[(frame["column"] == "Avg") & frame["ours"].notna()]
    assert sorted(zip(ours["r"], ours["b"].fillna(1), ours["ours"].round(2))) == [(8, 1, 69.0), (8, 2, 70.0)]
    path = plot_figure3b(frame, tmp_path / "figure3b.png")
    assert path.stat().st_size > 10_000


def test_spectra_skip_runs_without_adapters(tmp_path):
    write_run(tmp_path, "fig", "tiny-decoder", "toy-math", method("lora"), 0, {"toy_arith": {"accuracy": 1.0}})
    assert len(load_results(tmp_path)) == 1 and spectra(load_results(tmp_path)).empty


def test_figure4_reads_the_runs_of_its_experiment(tmp_path):
    write_run(
        tmp_path, "math", "llama-3-8b", "math", method("lora", r=4), 0, uniform_math(0.5), plan="figure4"
    )  # in its sweep
    write_run(
        tmp_path, "math", "llama-3-8b", "math", method("bora", r=16, blocks=64), 0, uniform_math(0.5), plan="figure4"
    )  # in it
    write_run(
        tmp_path, "math", "llama-3-8b", "math", method("lora", r=4), 1, uniform_math(0.5), plan="figure4"
    )  # seed 1: not in it
    write_run(
        tmp_path, "math", "gemma-7b", "math", method("lora", r=4), 0, uniform_math(0.5), plan="figure4"
    )  # other model: not
    chosen = figure4_runs(load_results(tmp_path), tmp_path)
    assert sorted(zip(chosen["model"], chosen["method_tag"], chosen["seed"])) == [
        ("llama-3-8b", "bora_r16_b64_a32_d0.05_QKV", 0),
        ("llama-3-8b", "lora_r4_a8_d0.05_QKV", 0),
    ]


def test_a_sigma_blow_up_is_clipped_and_marked_not_flattening_the_rest(tmp_path, monkeypatch):
    import pandas as pd

    from bora.report import figures

    assert figures._outlier_ceiling(pd.Series([1.0, 2.0, 3.0])) is None
    assert figures._outlier_ceiling(pd.Series([1.0, 2.0, 3.0, 5e10])) == pytest.approx(2.5 * figures.OUTLIER_FACTOR)
    frame = pd.DataFrame(
        [
            {
                "label": label,
                "model": "m",
                "task": "t",
                "method": method,
                "r": 8,
                "blocks": blocks,
                "layer": layer,
                "above_threshold": 8,
                "sum_squared": value,
            }
            for label, method, blocks, values in [
                ("LoRA r=8", "lora", float("nan"), [0.01, 0.02]),
                ("BoRA r=8 b=16", "bora", 16, [0.03, 5e10]),
            ]
            for layer, value in enumerate(values)
        ]
    )
    drawn = []
    real_annotate = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "annotate",
        lambda self, text, *a, **k: drawn.append(text) or real_annotate(self, text, *a, **k),
    )
    legends = []
    real_legend = matplotlib.axes.Axes.legend
    monkeypatch.setattr(
        matplotlib.axes.Axes, "legend", lambda self, *a, **k: legends.append(self) or real_legend(self, *a, **k)
    )
    figures.plot_spectra(frame, tmp_path / "s.png", "test")
    assert drawn == ["5e+10"] and len(legends) == 2  # the outlier's true value is written; a legend per panel
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    figures._log_axis(ax)
    assert ax.yaxis.get_major_formatter()(0.0112, 0) == "0.0112"  # not 1.12x10^-2
    assert isinstance(ax.yaxis.get_minor_formatter(), matplotlib.ticker.NullFormatter)
    plt.close(fig)
