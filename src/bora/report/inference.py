"""Statistics for every claim of every study: an estimate, its 95% confidence interval, a p-value, a verdict that
compares the interval with 0 *and* with the paper's effect, and the smallest effect the design could detect.

A claim is a difference of table cells (BoRA's Avg minus LoRA's), computed once per seed with the cells paired by
seed. Two sources of noise are in such a difference:

- **seeds**: the per-seed differences vary; their mean has variance ``s^2 / n`` (``n`` seeds, ``n - 1`` degrees of
  freedom). With nothing else, the interval is the paired t interval (``scipy.stats.ttest_1samp`` on the per-seed
  differences, the same as ``ttest_rel`` on the two cells).
- **questions** (generation studies, where the predictions are committed): every seed answers the *same* test
  questions, so the seeds cannot show how much the draw of questions moves the difference. Its variance
  (``question_variance``: per question, the difference of correctness averaged over the seeds; ``var / n`` per set;
  the sets combined as Avg is) is added to the seeds' (``s^2 / n + v_q``), with Welch-Satterthwaite degrees of
  freedom, as for any sum of two independent variance estimates.

Verdicts (``verdict``), one of five words wherever a claim is shown:

- gain claims (the paper's effect ``P``, e.g. +2.4): **replicated** when the interval excludes 0 on ``P``'s side,
  **opposite** when it excludes 0 on the other side, **smaller than claimed** when it holds 0 but excludes ``P``,
  **inconclusive** when it holds both; replicated and opposite also need the Holm-adjusted p-value (over the claims
  of one study) below 0.05, else the verdict is inconclusive and says so.
- not-worse claims ("comparable or superior"): **not worse** when the interval's lower end is above ``-margin``
  (``NOT_WORSE_MARGIN``, in the claim's units), **opposite** when its upper end is below 0 (worse), else
  **inconclusive**.
- parity claims (a cost ratio "on par"): **on par** when the interval lies within ``1 +- PARITY_TOLERANCE``
  (two one-sided tests), **opposite** when it lies wholly outside it, else **inconclusive**.

The smallest detectable effect (``Estimate.detectable``) is ``(t_{0.975} + t_{0.80}) x SE`` at the design's degrees
of freedom (about 2.8 SE with many): a paper effect below it cannot be resolved by this design, whatever the
estimate. ``seeds_needed`` / ``questions_needed`` plan a design that would resolve it (``bora power``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
POWER = 0.80
ALPHA = 1 - LEVEL
NOT_WORSE_MARGIN = 1.0  # points (x100) of the claim's score: "comparable" allows at most this much below
PARITY_TOLERANCE = 0.05  # a cost ratio within 5% of 1 is "on par"

REPLICATED, OPPOSITE, SMALLER, INCONCLUSIVE = "replicated", "opposite", "smaller than claimed", "inconclusive"
NOT_WORSE, ON_PAR = "not worse", "on par"
NO_RUNS = "no runs"
VERDICTS = (REPLICATED, OPPOSITE, SMALLER, INCONCLUSIVE, NOT_WORSE, ON_PAR)

RULES = (
    "Verdicts, from 95% intervals: replicated (opposite) when the interval excludes 0 on the paper's side (the "
    "other side) and Holm's p < 0.05; smaller than claimed when it holds 0 but not the paper's value; inconclusive "
    "when it holds both, or with one seed. Not-worse claims: not worse when its lower end is above "
    f"-{NOT_WORSE_MARGIN:g}, opposite when its upper end is below 0. Parity claims: on par when it lies within "
    f"1 ± {PARITY_TOLERANCE:g}. Detectable: the smallest true effect the design finds with 80% power, "
    "(t_0.975 + t_0.80) x SE; a paper effect below it cannot be resolved by this design, whatever the estimate."
)


@dataclass(frozen=True)
class Estimate:
    """One claim's estimate over ``seeds`` per-seed differences (and the question draw, where given)."""

    mean: float
    se: float
    df: float
    low: float
    high: float
    p: float  # two-sided, H0: the effect is 0 (parity claims: the ratio is 1)
    seeds: int
    seed_sd: float  # the per-seed differences' std (ddof=1); NaN under 2 seeds
    question_se: float  # the question draw's standard error on the mean (0 when not given)
    null: float = 0.0
    questions: int = 0  # how many test questions the question draw's variance rests on (0: not given)

    @property
    def sources(self) -> str:
        return "seeds + questions" if self.question_se > 0 else "seeds"

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def detectable(self) -> float:
        """The smallest true effect this design detects with 80% power (two-sided 5% test)."""
        return detectable_effect(self.se, self.df)

    def excludes(self, value: float) -> bool:
        return self.has_interval and not (self.low <= value <= self.high)


def detectable_effect(se: float, df: float) -> float:
    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan
    return float((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)) * se)


def welch_df(seed_var_of_mean: float, seeds: int, question_var: float, questions: int) -> float:
    """Welch-Satterthwaite degrees of freedom of the sum of two independent variance estimates."""
    terms = []
    if seeds > 1 and seed_var_of_mean > 0:
        terms.append(seed_var_of_mean**2 / (seeds - 1))
    if question_var > 0 and questions > 1:
        terms.append(question_var**2 / (questions - 1))
    total = seed_var_of_mean + question_var
    if not terms or total <= 0:
        return float(seeds - 1) if seeds > 1 else math.nan
    return float(total**2 / sum(terms))


def estimate(
    differences: Sequence[float], question_var: float = 0.0, questions: int = 0, null: float = 0.0
) -> Estimate:
    """The estimate of a claim from its per-seed differences (``null``: the value of no effect; 1 for a ratio),
    with the question draw's variance on the mean (``question_var``, from ``questions`` questions) added."""
    values = np.asarray([v for v in differences if not (v is None or math.isnan(v))], dtype=float)
    n = len(values)
    if n == 0:
        nan = math.nan
        return Estimate(nan, nan, nan, nan, nan, nan, 0, nan, math.sqrt(question_var) if question_var else 0.0, null)
    mean = float(values.mean())
    seed_sd = float(values.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and seed_sd <= 1e-9 * max(1.0, abs(mean)):
        seed_sd = 0.0  # identical up to rounding (e.g. 0.62 - 0.61 and 0.63 - 0.62)
    if question_var <= 0 and n > 1:
        if seed_sd == 0:  # identical seeds: a point, no interval
            return Estimate(mean, 0.0, float(n - 1), math.nan, math.nan, math.nan, n, 0.0, 0.0, null)
        test = stats.ttest_1samp(values, null)
        low, high = test.confidence_interval(LEVEL)
        se = seed_sd / math.sqrt(n)
        return Estimate(mean, se, float(n - 1), float(low), float(high), float(test.pvalue), n, seed_sd, 0.0, null)
    seed_var = seed_sd**2 / n if n > 1 else 0.0
    if n < 2 and question_var <= 0:
        nan = math.nan
        return Estimate(mean, nan, nan, nan, nan, nan, n, nan, 0.0, null)
    # one seed: the question draw is the only measured noise (the seed noise is unknown, so the interval is too
    # narrow by whatever the seeds would add; still the question noise alone must be resolved)
    variance = seed_var + question_var
    se = math.sqrt(variance)
    df = welch_df(seed_var, n, question_var, questions)
    if not math.isfinite(df):
        df = float(max(questions - 1, 1))
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean - null) / se, df)) if se > 0 else math.nan
    return Estimate(mean, se, df, mean - half, mean + half, p, n, seed_sd, math.sqrt(question_var), null, questions)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (NaN stays NaN and does not count as a test)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    m, running = len(indexed), 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(kind: str, est: Estimate, paper: float, adjusted_p: float | None = None) -> str:
    """One of ``VERDICTS`` (or ``no runs``) for a claim of ``kind`` (gain | not_worse | parity) whose paper effect
    is ``paper``; ``adjusted_p``: its Holm-adjusted p-value over the study's claims (None: no correction)."""
    if est.seeds == 0:
        return NO_RUNS
    if est.seeds == 1:  # the question draw alone may give an interval, but not how much another seed moves it
        return f"{INCONCLUSIVE} (1 seed: the seeds' noise unknown)"
    if not est.has_interval:
        return f"{INCONCLUSIVE} (no spread: no interval)"
    significant = adjusted_p is None or (not math.isnan(adjusted_p) and adjusted_p < ALPHA)
    if kind == "parity":
        inside = 1 - PARITY_TOLERANCE <= est.low and est.high <= 1 + PARITY_TOLERANCE
        outside = est.high < 1 - PARITY_TOLERANCE or est.low > 1 + PARITY_TOLERANCE
        return ON_PAR if inside else OPPOSITE if outside else INCONCLUSIVE
    if kind == "not_worse":
        if est.low > -NOT_WORSE_MARGIN:
            return NOT_WORSE
        return OPPOSITE if est.high < 0 else INCONCLUSIVE
    side = 1.0 if not math.isfinite(paper) or paper >= 0 else -1.0
    if est.excludes(0.0):
        word = REPLICATED if est.mean * side > 0 else OPPOSITE
        return word if significant else f"{INCONCLUSIVE} (not after Holm)"
    if math.isfinite(paper) and est.excludes(paper):
        return SMALLER
    return INCONCLUSIVE


def seeds_needed(seed_sd: float, question_var: float, effect: float, most: int = 1000) -> int | None:
    """The fewest seeds with which a true effect of ``effect`` is detectable (80% power), the per-seed spread
    ``seed_sd`` and the question draw's variance ``question_var`` as measured; None when no number of seeds does
    (the question draw alone hides it) or the spread is unknown."""
    if not (math.isfinite(effect) and effect != 0 and math.isfinite(seed_sd)):
        return None
    for n in range(2, most + 1):
        variance = seed_sd**2 / n + question_var
        df = welch_df(seed_sd**2 / n, n, question_var, 10**6)
        if variance <= 0 or detectable_effect(math.sqrt(variance), df) <= abs(effect):
            return n
    return None


def questions_needed(seed_sd: float, seeds: int, question_var: float, questions: int, effect: float) -> int | None:
    """The fewest questions (in all, spread over the sets as now; the question variance scales as 1 / questions)
    with which ``effect`` is detectable at ``seeds`` seeds; None when the seeds' spread alone hides it."""
    if not (math.isfinite(effect) and effect != 0 and question_var > 0 and questions > 0):
        return None
    seed_var = seed_sd**2 / seeds if seeds > 1 and math.isfinite(seed_sd) else 0.0
    per_question = question_var * questions  # the variance one question would put on the mean

    def detectable(count: int) -> float:
        return detectable_effect(
            math.sqrt(seed_var + per_question / count), welch_df(seed_var, seeds, per_question / count, count)
        )

    low, high = 2, 10**7
    if detectable(high) > abs(effect):
        return None
    while low < high:  # the detectable size falls as the questions grow
        middle = (low + high) // 2
        if detectable(middle) <= abs(effect):
            high = middle
        else:
            low = middle + 1
    return low
