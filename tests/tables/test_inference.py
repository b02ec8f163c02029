"""The statistics behind every verdict: intervals checked against scipy, verdicts on synthetic truths, Holm, power."""

import math

import numpy as np
import pytest
from scipy import stats

from bora.report import inference
from bora.report.inference import estimate, holm, questions_needed, seeds_needed, verdict


def test_the_interval_of_a_paired_difference_is_scipys_paired_t():
    rng = np.random.default_rng(0)
    lora = rng.normal(70, 1, size=5)
    bora = lora + rng.normal(1, 0.5, size=5)
    est = estimate(list(bora - lora))
    paired = stats.ttest_rel(bora, lora)
    assert (est.low, est.high) == pytest.approx(tuple(paired.confidence_interval(0.95)))
    assert est.p == pytest.approx(paired.pvalue) and est.df == 4
    assert est.se == pytest.approx(stats.sem(bora - lora))


def test_the_question_draw_adds_its_variance_with_welch_degrees_of_freedom():
    differences, question_var = [1.0, 2.0, 3.0], 0.25
    est = estimate(differences, question_var=question_var, questions=2000)
    seed_var = np.var(differences, ddof=1) / 3
    assert est.se == pytest.approx(math.sqrt(seed_var + question_var))
    df = (seed_var + question_var) ** 2 / (seed_var**2 / 2 + question_var**2 / 1999)
    assert est.df == pytest.approx(df)
    assert est.high - est.mean == pytest.approx(stats.t.ppf(0.975, df) * est.se)
    # more variance than the seeds alone, better known (Welch's df lies between the two sources')
    assert est.se > estimate(differences).se and 2 < est.df < 1999
    one_seed = estimate([1.0], question_var=question_var, questions=500)  # the questions still give an interval
    assert one_seed.has_interval and one_seed.df == pytest.approx(499)
    assert verdict("gain", one_seed, paper=1.0) == "inconclusive (1 seed: the seeds' noise unknown)"


def planted(mean: float, sd: float, seeds: int, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, sd, size=seeds))


def test_a_planted_gain_far_above_the_noise_is_replicated():
    est = estimate(planted(5.0, 0.5, 5))
    assert est.low > 0 and verdict("gain", est, paper=2.0) == "replicated"
    assert verdict("gain", est, paper=-2.0) == "opposite"  # the paper claimed a loss


def test_no_gain_is_not_replicated_and_with_a_tiny_paper_effect_is_inconclusive():
    est = estimate(planted(0.0, 1.0, 3, seed=1))
    assert est.low < 0 < est.high
    assert 0.2 < est.detectable  # 3 seeds of sd 1 cannot see an effect of 0.2
    assert verdict("gain", est, paper=0.2) == "inconclusive"


def test_a_precise_zero_against_a_large_paper_effect_is_smaller_than_claimed():
    est = estimate(planted(0.0, 0.3, 8, seed=2))
    assert est.low < 0 < est.high < 3.0
    assert verdict("gain", est, paper=3.0) == "smaller than claimed"


def test_an_opposite_effect_is_opposite():
    est = estimate(planted(-3.0, 0.5, 4, seed=3))
    assert est.high < 0 and verdict("gain", est, paper=2.0) == "opposite"


def test_a_significant_estimate_that_does_not_survive_holm_is_inconclusive():
    est = estimate(planted(2.0, 1.0, 4, seed=4))
    assert est.p < 0.05
    assert verdict("gain", est, paper=2.0, adjusted_p=min(1.0, 3 * est.p + 0.05)) == "inconclusive (not after Holm)"


def test_not_worse_and_parity_rules():
    assert verdict("not_worse", estimate([-0.2, 0.1, 0.0, -0.1]), paper=0.0) == "not worse"
    assert verdict("not_worse", estimate([-3.0, -2.5, -2.8]), paper=0.0) == "opposite"
    assert verdict("not_worse", estimate([-2.0, 1.0, -0.5]), paper=0.0) == "inconclusive"
    ratios = estimate([1.01, 1.02, 1.00, 1.01], null=1.0)
    assert verdict("parity", ratios, paper=1.0) == "on par"
    assert ratios.p == pytest.approx(stats.ttest_1samp([1.01, 1.02, 1.00, 1.01], 1.0).pvalue)
    assert verdict("parity", estimate([1.3, 1.32, 1.31], null=1.0), paper=1.0) == "opposite"


def test_one_seed_or_none_gives_no_verdict_either_way():
    assert verdict("gain", estimate([2.0]), paper=2.0) == "inconclusive (1 seed: the seeds' noise unknown)"
    assert verdict("gain", estimate([]), paper=2.0) == "no runs"


def test_holm_adjusts_step_down_and_keeps_order():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


def test_the_detectable_effect_is_about_2_8_standard_errors_with_many_degrees_of_freedom():
    assert inference.detectable_effect(1.0, 10**6) == pytest.approx(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))
    assert inference.detectable_effect(1.0, 1) > 10  # two seeds: t(1)


def test_seeds_needed_is_the_fewest_that_detect_the_effect():
    n = seeds_needed(seed_sd=1.0, question_var=0.0, effect=1.0)
    detect = lambda k: inference.detectable_effect(1.0 / math.sqrt(k), k - 1)  # noqa: E731
    assert detect(n) <= 1.0 < detect(n - 1)
    # the question draw alone hides an effect below its own detectable size: no number of seeds helps
    assert seeds_needed(seed_sd=0.1, question_var=1.0, effect=0.5) is None


def test_questions_needed_scale_the_question_variance():
    # 2000 questions put a variance of 0.2 on the mean; the seeds add 0.01
    count = questions_needed(seed_sd=math.sqrt(0.03), seeds=3, question_var=0.2, questions=2000, effect=1.0)
    assert count > 2000
    variance = 0.01 + 0.2 * 2000 / count
    assert inference.detectable_effect(math.sqrt(variance), 10**3) <= 1.0 + 1e-6
    # the seeds alone hide it: no number of questions helps
    assert questions_needed(seed_sd=3.0, seeds=2, question_var=0.2, questions=2000, effect=1.0) is None
