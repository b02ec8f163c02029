"""The study tables of README.md and the docs pages are exactly what the committed result files give
(results/<study>/), and the numbers their prose quotes are the tables' (scripts/update_readme.py writes the tables)."""

import importlib.util
import re

import pytest

from bora.config.identity import run_identity
from bora.paths import PROJECT_ROOT
from bora.record import read_record
from bora.report.aggregate import load_results
from bora.report.committed import COMMITTED, render_committed
from bora.report.generation import (
    GENERATION_STUDIES,
    decoding_table,
    paired_question_se,
    prediction_rows,
    training_table,
)
from bora.report.selection import SELECTIONS
from bora.report.specs import planned
from bora.report.study import STUDIES
from bora.tasks.sources import data_files

spec = importlib.util.spec_from_file_location("update_readme", PROJECT_ROOT / "scripts" / "update_readme.py")
update_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_readme)


PAGES = update_readme.pages()  # README.md and docs/**/*.md
COMMONSENSE_PAGE = PROJECT_ROOT / "docs" / "studies" / "cpu-commonsense.md"  # the generation study's reading


def page_text(page) -> str:
    return page.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", COMMITTED)
def test_readme_table_equals_the_committed_results(name):
    """Every page holding the study's block holds exactly what the committed files render (figure links made
    relative to the page), and some page holds it."""
    holders = update_readme.holders(name)
    assert holders, f"no page (README.md, docs/) holds the {name} block"
    fresh = render_committed(name)
    for page in holders:
        block = update_readme.readme_block(name, page_text(page))
        assert block == update_readme.for_page(fresh, page), f"{page} is out of date with results/: run `make readme`"


def test_figure_links_are_written_relative_to_each_page():
    rendered = "![Figure](results/x/figures/f.png)"
    assert update_readme.for_page(rendered, PROJECT_ROOT / "README.md") == rendered
    docs = PROJECT_ROOT / "docs"
    assert update_readme.for_page(rendered, docs / "index.md") == rendered  # the site serves results/ at its root
    assert update_readme.for_page(rendered, docs / "studies" / "x.md") == "![Figure](../results/x/figures/f.png)"


def committed_runs(results: str, experiment: str, plan: str):
    """The committed runs of ``results/<experiment>/``, checked to be runs ``conf/experiment/<plan>.yaml`` plans
    (identity) that succeeded; a run still in progress (a local checkout mid-study) is the one exception."""
    root = PROJECT_ROOT / results / experiment
    if not root.is_dir():
        pytest.skip(f"no committed results under {root} yet")
    runs = load_results(PROJECT_ROOT / results, [experiment])
    assert set(runs["identity"]) <= {run_identity(config) for config in planned(plan)}
    bad = runs[~runs["status"].isin(["success", "running"])]
    assert bad.empty, bad[["run_dir", "status", "error"]]
    return runs


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_committed_results_are_the_planned_runs_and_all_succeeded(name):
    """Every committed run is one the study plans (identity), succeeded, and names its config and data checksums."""
    study = STUDIES[name]
    runs = committed_runs(study.results, study.experiment_name, study.experiment)
    for run_dir in runs.loc[runs["status"] == "success", "run_dir"]:
        record = read_record(run_dir)
        # a checksum of every file the task reads (GLUE: train.tsv and dev.tsv; a generation study: its training
        # parts and test sets)
        assert record.data["source"] == "local" and set(record.data["sha256"]) == set(data_files(record.config["task"]))
        assert record.config["model"]["name"] == study.model and record.git.get("commit")


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_committed_selection_runs_are_planned_held_out_and_succeeded(name):
    """The protocol-selection runs: planned by their experiment, scored on held-out train (never dev), succeeded."""
    runs = committed_runs(SELECTIONS[name].results, name, name)
    assert all(config["task"]["eval_split"] == "heldout" for config in runs["config"])


def test_ablation_study_runs_are_planned_and_its_committed_figures_are_what_they_give(tmp_path):
    """results/cpu-ablations(-spectra) hold only runs their sweeps plan, all succeeded; the committed figures' plotted
    numbers (figures/*.csv) are what the committed runs give, and their PNGs exist."""
    from bora.report import ablations, ablations_page

    grid = {run_identity(c) for sweep in (ablations.GRID, ablations.TABLE7) for c in planned(sweep)}
    for folder, identities in (
        ("cpu-ablations", grid),
        ("cpu-ablations-spectra", {run_identity(c) for c in planned(ablations.SPECTRA)}),
    ):
        runs = load_results(PROJECT_ROOT / "results", [folder])
        assert set(runs["identity"]) <= identities, folder
        assert set(runs["status"]) <= {"success", "running"}, runs[runs["status"] != "success"][["run_dir", "error"]]
    ablations_page.render_ablations(PROJECT_ROOT / "results", tmp_path, tmp_path / "figures")
    committed = PROJECT_ROOT / ablations.FIGURE_DIR
    for name in ("figure3b", "figure4"):
        assert (committed / f"{name}.png").stat().st_size > 0
        fresh = (tmp_path / "figures" / f"{name}.csv").read_text()
        assert (committed / f"{name}.csv").read_text() == fresh, f"{name}.csv is out of date: run `make readme`"


@pytest.mark.parametrize("name", sorted(GENERATION_STUDIES))
def test_generation_study_figures_are_what_the_committed_runs_give(name, tmp_path):
    """The committed figures' plotted numbers (figures/*.csv) are what the committed runs give, and their PNGs exist."""
    from bora.report.generation_figures import render_generation_figures

    study = GENERATION_STUDIES[name]
    committed = PROJECT_ROOT / study.figures
    if not committed.is_dir():
        pytest.skip(f"no committed figures under {committed} yet")
    runs = load_results(PROJECT_ROOT / STUDIES[name].results, [STUDIES[name].experiment_name, study.untrained])
    render_generation_figures(study, runs, tmp_path)
    for stem in ("accuracy", "training-loss"):
        assert (committed / f"{stem}.png").stat().st_size > 0
        fresh = (tmp_path / f"{stem}.csv").read_text()
        assert (committed / f"{stem}.csv").read_text() == fresh, f"{stem}.csv is out of date: run `make readme`"


def _quoted(pattern: str, what: str, page=COMMONSENSE_PAGE) -> re.Match:
    """The page's sentence quoting ``what`` (whitespace folded), matched by ``pattern``."""
    text = " ".join(page_text(page).split())
    quoted = re.search(pattern, text)
    assert quoted, f"{page.relative_to(PROJECT_ROOT)} no longer quotes {what}: drop this test with the sentence"
    return quoted


def _generation_study(name: str = "cpu-commonsense"):
    """The generation study, its table spec and its committed runs (the untrained one included)."""
    study, spec = GENERATION_STUDIES[name], STUDIES[name]
    return study, spec, load_results(PROJECT_ROOT / spec.results, [spec.experiment_name, study.untrained])


def test_the_readme_prose_on_melora_and_hydralora_boolq_is_what_their_predictions_give():
    """The generation study's reading: MELoRA's and HydraLoRA's BoolQ scores and unanswered generations, per seed."""
    patterns = {
        "melora": r"MELoRA's BoolQ scores \(seeds 0 and 1: ([\d.]+) and ([\d.]+)\).*? finds no answer in "
        r"(\d+) and (\d+) of its (\d+) generations",
        "hydralora": r"HydraLoRA's \(([\d.]+) and ([\d.]+)\) are the same rule, with (\d+) and (\d+) of (\d+) "
        r"unanswered",
    }
    for method_name, pattern in patterns.items():
        quoted = _quoted(pattern, f"{method_name}'s BoolQ runs")
        scores, unanswered, questions = [], [], []
        for seed in (0, 1):
            runs = sorted((PROJECT_ROOT / "results" / "cpu-commonsense").glob(f"*/*/{method_name}_*/seed={seed}-*"))
            assert len(runs) == 1
            rows = prediction_rows(runs[0], "boolq")
            scores.append(round(100 * read_record(runs[0]).metrics["boolq"]["accuracy"], 1))
            unanswered.append(sum(r["prediction"] is None for r in rows))
            questions.append(len(rows))
        assert [float(g) for g in quoted.groups()[:2]] == scores
        assert [int(g) for g in quoted.groups()[2:4]] == unanswered
        assert [int(quoted.group(5))] * 2 == questions  # "of its 500": both seeds answered that many


def test_the_readme_quotes_the_generation_studys_run_times_as_its_result_files_give_them():
    """The README's run times of the generation study: the range over its committed successful runs, rounded."""
    quoted = _quoted(
        r"The study's own runs came out faster: (\d+)-(\d+) minutes of training \((\d+)-(\d+) s a step\) "
        r"and (\d+)-(\d+) minutes of generation each",
        "the study's run times",
    )
    records = [read_record(path) for path in (PROJECT_ROOT / "results" / "cpu-commonsense").glob("*/*/*/*/result.json")]
    records = [r for r in records if r.status == "success"]
    train = [r.train.wall_time_s for r in records]
    per_step = [r.train.wall_time_s / r.train.global_steps for r in records]
    generation = [r.eval["wall_time_s"] for r in records]
    expected = [
        round(min(train) / 60),
        round(max(train) / 60),
        round(min(per_step)),
        round(max(per_step)),
        round(min(generation) / 60),
        round(max(generation) / 60),
    ]
    assert [int(group) for group in quoted.groups()] == expected


def test_the_readme_weighs_boras_differences_to_lora_as_the_claims_table_gives_them():
    """The README's reading of the generation study quotes the range of BoRA's differences to LoRA (r=8, r=32) and
    their largest size in standard errors of the question draw: as the committed runs give them."""
    from bora.report.study import check_study_claims

    quoted = _quoted(
        r"BoRA's differences to LoRA r=8 and r=32 \(([-+\d.]+) to ([-+\d.]+) points of Avg, .*?\) are .*?"
        r"up to ([\d.]+) times the standard error",
        "BoRA's differences to LoRA",
    )
    study, spec, runs = _generation_study()
    claims = check_study_claims(spec, runs).set_index("claim")
    versus_lora = claims.loc[["bora8_vs_lora8", "bora16_vs_lora8", "bora16_vs_lora32", "bora8_vs_lora32"]]
    ratios = [
        abs(row["ours"]) / paired_question_se(study, runs, row["better_tag"], row["baseline_tag"])
        for _, row in versus_lora.iterrows()
    ]
    assert float(quoted.group(1)) == round(versus_lora["ours"].min(), 2)
    assert float(quoted.group(2)) == round(versus_lora["ours"].max(), 2)
    assert float(quoted.group(3)) == round(max(ratios), 1)


def test_the_readme_quotes_each_rows_final_training_loss_as_the_result_files_give_it():
    """The README's reading quotes the last logged training loss of the two slowest rows and the others' range."""
    quoted = _quoted(
        r"\(logged at the last step, mean over seeds: MELoRA ([\d.]+), HydraLoRA ([\d.]+); the other rows "
        r"([\d.]+)-([\d.]+)\)",
        "the final training losses",
    )
    study, _, runs = _generation_study()
    table = training_table(study, runs)
    last = table.set_index("method_tag")[
        max((c for c in table.columns if c.startswith("step ")), key=lambda c: int(c.split()[1]))
    ]
    method = last.index.str.split("_").str[0]
    assert float(quoted.group(1)) == round(last[method == "melora"].item(), 3)
    assert float(quoted.group(2)) == round(last[method == "hydralora"].item(), 3)
    others = last[~method.isin(["melora", "hydralora"])]
    assert (float(quoted.group(3)), float(quoted.group(4))) == (round(others.min(), 3), round(others.max(), 3))


def test_the_readme_bounds_each_rows_accuracy_above_its_own_guessing_as_the_predictions_give_it():
    quoted = _quoted(
        r"no row answers better than drawing its own answers at random in its own proportions would by "
        r"more than ([\d.]+) points",
        "the rows' accuracy above guessing",
    )
    study, _, runs = _generation_study()
    assert float(quoted.group(1)) == round(decoding_table(study, runs)["above_guessing"].max(), 1)


def test_the_readme_quotes_how_often_runs_say_true_on_boolq_as_their_predictions_give_it():
    """BoRA's seed-1 runs against the other LoRA, DoRA and BoRA runs: share of "true" answers and BoolQ accuracy."""
    quoted = _quoted(
        r"BoRA's seed-1 runs say \"true\" to (\d+)-(\d+)% of the questions and score (\d+)-(\d+)%; "
        r"the other runs of LoRA, DoRA and BoRA say it to (\d+)-(\d+)% and score (\d+)-(\d+)%",
        "BoolQ's true shares",
    )
    study, spec, runs = _generation_study()
    runs = runs[
        (runs["experiment"] == spec.experiment_name)
        & runs["method"].isin(["lora", "dora", "bora"])
        & (runs["status"] == "success")
    ]
    groups = {True: [], False: []}  # BoRA seed 1, the others: (share of "true", accuracy) x100
    for _, run in runs.iterrows():
        rows = prediction_rows(run["run_dir"], "boolq")
        share = sum(r["prediction"] == "true" for r in rows) / len(rows)
        accuracy = run["metrics"]["boolq"]["accuracy"]
        groups[run["method"] == "bora" and run["seed"] == 1].append((100 * share, 100 * accuracy))
    assert len(groups[True]) == 2 and groups[False]
    expected = []
    for group in (groups[True], groups[False]):
        shares, scores = zip(*group)
        expected += [round(min(shares)), round(max(shares)), round(min(scores)), round(max(scores))]
    assert [int(g) for g in quoted.groups()] == expected


def test_a_cut_off_result_file_is_named_not_dropped_from_the_readme_tables(tmp_path):
    from bora.errors import BoraError

    [first] = sorted((PROJECT_ROOT / "results" / "cpu-glue").rglob("result.json"))[:1]
    copy = tmp_path / "results" / first.relative_to(PROJECT_ROOT / "results")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(first.read_bytes()[:200])  # a checkout cut short, a merge gone wrong
    update_readme.check_every_result_readable(PROJECT_ROOT / "results")  # the committed files all read
    with pytest.raises(BoraError, match=r"result\.json is unreadable \(not valid JSON.*restore it"):
        update_readme.check_every_result_readable(tmp_path / "results")


INTERVAL = re.compile(r"([-+]?\d+\.\d+) \[([-+]?\d+\.\d+), ([-+]?\d+\.\d+)\]")


def _claim_rows(text: str) -> list[dict[str, str]]:
    """Every row ({column: cell}) of every table of ``text`` with a ``verdict`` column, under ``interval`` its
    ``95% CI`` cell."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif "verdict" in header and not set(line) <= set("|:- "):
            row = dict(zip(header, cells))
            row["interval"] = next((c for h, c in row.items() if "95% CI" in h), "")
            rows.append(row)
    return rows


def _blocks_and_prose(text: str) -> tuple[str, str]:
    """(the rendered study blocks of a page, the rest of it)."""
    blocks = re.findall(r"<!-- study:[\w-]+ -->\n(.*?)\n<!-- /study:", text, re.S)
    prose = re.sub(r"<!-- study:[\w-]+ -->\n.*?\n<!-- /study:[\w-]+ -->", "", text, flags=re.S)
    return "\n".join(blocks), prose


def test_every_verdict_is_one_of_the_five_and_rests_on_its_interval():
    """No claim on any page is called replicated or opposite unless its interval excludes 0 (and the words are the
    five)."""
    from bora.report.inference import NO_RUNS, VERDICTS

    rows = [row for page in PAGES for row in _claim_rows(page_text(page))]
    assert len(rows) >= 3 * 6  # the claims tables of the three CPU studies
    for row in rows:
        interval, verdict = row["interval"], row["verdict"]
        assert verdict.split(" (")[0] in (*VERDICTS, NO_RUNS), verdict
        if verdict in ("replicated", "opposite"):
            _, low, high = (float(v) for v in INTERVAL.search(interval).groups())
            assert low > 0 or high < 0, (interval, verdict)


def test_every_interval_the_prose_quotes_is_one_the_rendered_tables_give():
    """Each ``estimate [low, high]`` of any page's prose (README.md, docs/) is a cell of a study table, which are
    rendered from the committed result files (test_readme_table_equals_the_committed_results)."""
    split = [_blocks_and_prose(page_text(page)) for page in PAGES]
    rendered = "\n".join(blocks for blocks, _ in split)
    quoted = {
        page: [m.group(0) for m in INTERVAL.finditer(" ".join(prose.split()))] for page, (_, prose) in zip(PAGES, split)
    }
    assert sum(map(len, quoted.values())) >= 10 and len(quoted[PAGES[0]]) >= 3  # the studies' readings; the README's
    for page, intervals in quoted.items():
        for interval in intervals:
            assert interval in rendered or ("+" + interval) in rendered, f"{page} quotes {interval}, no table has it"


def test_the_readmes_findings_are_rows_of_the_study_pages_claims_tables():
    """Each row of the README's summary of the CPU studies has the interval, verdict and paper value (on the study's
    tasks) of one claims row rendered from the committed results (on a study page)."""
    readme = PROJECT_ROOT / "README.md"
    findings = _claim_rows(page_text(readme))
    assert len(findings) >= 3
    rendered = [row for page in PAGES if page != readme for row in _claim_rows(_blocks_and_prose(page_text(page))[0])]
    for finding in findings:
        same = [
            row
            for row in rendered
            if row["interval"] == finding["interval"]
            and row["verdict"] == finding["verdict"]
            and finding["paper"] == row.get("paper, our 4 tasks", row.get("paper"))  # the paper on these tasks
        ]
        assert same, f"the README's finding {finding} is no row of a study page's claims tables"
