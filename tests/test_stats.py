from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction

import pytest

from harness.stats import (
    MONTE_CARLO_DRAWS,
    RELATIVE_PRECISION,
    Histogram,
    chi_square_sf,
    monte_carlo_seed,
    multinomial_sf,
    multinomial_sf_monte_carlo,
    placement_shapes,
    summarize,
)

PERCENTILES = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9]


def exact(samples: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least p% of the samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(p * len(ordered) / 100 - 1e-9))
    return ordered[rank - 1]


def filled(samples: list[float]) -> Histogram:
    h = Histogram()
    for s in samples:
        h.record(s)
    return h


def test_the_stated_precision_is_within_two_percent() -> None:
    assert RELATIVE_PRECISION <= 0.02


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_of_known_samples_are_within_the_stated_precision(seed: int) -> None:
    rng = random.Random(seed)
    samples = [rng.lognormvariate(math.log(0.02), 1.5) for _ in range(5000)]  # ~20 ms, from µs to seconds
    h = filled(samples)
    assert h.count == 5000
    for p in PERCENTILES:
        want = exact(samples, p)
        assert h.percentile(p) == pytest.approx(want, rel=RELATIVE_PRECISION), p


def test_small_sample_percentiles_use_the_nearest_rank() -> None:
    samples = [i / 1000 for i in range(1, 11)]  # 1 ms … 10 ms
    h = filled(samples)
    assert h.percentile(50) == pytest.approx(0.005, rel=RELATIVE_PRECISION)
    assert h.percentile(90) == pytest.approx(0.009, rel=RELATIVE_PRECISION)
    assert h.percentile(91) == 0.010  # rank 10: the exact max
    assert h.percentile(0) == 0.001  # the exact min
    assert h.percentile(100) == 0.010
    assert h.mean == pytest.approx(0.0055)


@pytest.mark.parametrize("value", [1e-5, 3.3e-5, 1e-3, 0.0123, 1.0, 7.77, 59.0, 599.0])
def test_every_scale_from_10_us_to_10_min_keeps_the_precision(value: float) -> None:
    # the value sits between an exact min and an exact max, so what comes back is its bucket's estimate
    h = filled([0.0, value, 1e6])
    assert h.percentile(50) == pytest.approx(value, rel=RELATIVE_PRECISION)


def test_many_values_across_the_range_keep_the_precision() -> None:
    for k in range(400):
        value = 1e-5 * (6e7 ** (k / 399))  # 10 µs … 600 s
        h = filled([0.0, value, 1e6])
        assert h.percentile(50) == pytest.approx(value, rel=RELATIVE_PRECISION), value


def test_values_outside_the_range_are_counted_and_clamped_to_the_exact_extremes() -> None:
    h = filled([2e-6, 3e-6, 1000.0, 2000.0])
    assert h.count == 4
    assert h.percentile(0) == 2e-6
    assert h.percentile(50) == pytest.approx(3e-6, abs=1e-5)  # below 10 µs: only the bucket is known
    assert h.percentile(75) <= 2000.0
    assert h.max == 2000.0


def test_memory_is_fixed_whatever_the_number_of_samples() -> None:
    rng = random.Random(7)
    h = filled([rng.uniform(0, 700) for _ in range(50_000)])
    assert len(h.to_json()["buckets"]) <= 26 * 64


def test_merge_equals_recording_everything_in_one() -> None:
    rng = random.Random(5)
    a = [rng.expovariate(50) for _ in range(2000)]
    b = [rng.expovariate(5) for _ in range(1000)]
    merged = filled(a)
    merged.merge(filled(b))
    together = filled(a + b)
    assert merged.count == 3000
    assert merged.to_json()["buckets"] == together.to_json()["buckets"]
    for p in [0, *PERCENTILES, 100]:
        assert merged.percentile(p) == together.percentile(p)
        assert merged.percentile(p) == pytest.approx(exact(a + b, p), rel=RELATIVE_PRECISION)


def test_merging_an_empty_histogram_changes_nothing() -> None:
    h = filled([0.1, 0.2])
    h.merge(Histogram())
    assert (h.count, h.min, h.max) == (2, 0.1, 0.2)
    empty = Histogram()
    empty.merge(h)
    assert (empty.count, empty.min, empty.max) == (2, 0.1, 0.2)


def test_json_round_trip() -> None:
    h = filled([0.001, 0.01, 0.01, 0.5, 42.0])
    again = Histogram.from_json(json.loads(json.dumps(h.to_json())))
    assert again.to_json() == h.to_json()
    assert [again.percentile(p) for p in PERCENTILES] == [h.percentile(p) for p in PERCENTILES]
    assert Histogram.from_json(Histogram().to_json()).count == 0


def test_json_from_another_layout_or_inconsistent_is_refused() -> None:
    data = filled([0.1]).to_json()
    with pytest.raises(ValueError, match="layout"):
        Histogram.from_json({**data, "sub_buckets": 32})
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_json({**data, "count": 2})
    with pytest.raises(ValueError, match="out of range"):
        Histogram.from_json({**data, "buckets": [[10**6, 1]]})


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_impossible_latencies_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Histogram().record(bad)


def test_percentile_needs_samples_and_a_valid_p() -> None:
    with pytest.raises(ValueError, match="empty"):
        Histogram().percentile(50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        filled([0.1]).percentile(101)


def test_record_times() -> None:
    h = Histogram()
    h.record(0.01, times=9)
    h.record(1.0)
    assert h.count == 10
    assert h.percentile(90) == pytest.approx(0.01, rel=RELATIVE_PRECISION)
    with pytest.raises(ValueError, match="times"):
        h.record(0.01, times=0)


def test_summarize_in_milliseconds() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 … 100 ms
    summary = summarize(filled(samples))
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(50.0, rel=RELATIVE_PRECISION)
    assert summary["p90"] == pytest.approx(90.0, rel=RELATIVE_PRECISION)
    assert summary["p99"] == pytest.approx(99.0, rel=RELATIVE_PRECISION)
    assert summary["max"] == 100.0
    assert summarize(Histogram()) == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [(3.841, 1, 0.05), (6.635, 1, 0.01), (5.991, 2, 0.05), (7.815, 3, 0.05), (9.488, 4, 0.05), (1.0, 3, 0.8013)],
)
def test_chi_square_survival_matches_the_tables(x: float, df: int, p: float) -> None:
    assert chi_square_sf(x, df) == pytest.approx(p, abs=2e-4)


def test_chi_square_survival_edges() -> None:
    assert chi_square_sf(0.0, 2) == 1.0
    assert chi_square_sf(500.0, 2) < 1e-100
    with pytest.raises(ValueError, match="at least 1"):
        chi_square_sf(1.0, 0)


def compositions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every vector of k counts adding up to n, in order."""
    if k == 1:
        yield (n,)
        return
    for first in range(n + 1):
        for rest in compositions(n - first, k - 1):
            yield (first, *rest)


def by_compositions(n: int, k: int) -> dict[int, Fraction]:
    """P(Σ X² ≥ s) for every square sum s reached, summed over every count vector with its multinomial
    coefficient, in fractions."""
    placements: Counter[int] = Counter()
    for counts in compositions(n, k):
        placements[sum(x * x for x in counts)] += math.factorial(n) // math.prod(math.factorial(x) for x in counts)
    tail, seen = {}, 0
    for square_sum in sorted(placements, reverse=True):
        seen += placements[square_sum]
        tail[square_sum] = Fraction(seen, k**n)
    return tail


def test_multinomial_sf_against_hand_computed_values() -> None:
    assert multinomial_sf(9, 3, 3) == pytest.approx(1 / 9, rel=1e-12)  # 3 clients on 3 pods, all on one: 3/27
    assert multinomial_sf(5, 3, 3) == pytest.approx(1 / 9 + 18 / 27, rel=1e-12)  # 2-1-0 or worse: 3 + 18 of 27
    assert multinomial_sf(3, 3, 3) == 1.0  # 1-1-1 is the most even: everything is at least as uneven
    assert multinomial_sf(16, 4, 2) == pytest.approx(2 / 16, rel=1e-12)  # 4-0 or 0-4
    assert multinomial_sf(10, 4, 2) == pytest.approx((2 + 8) / 16, rel=1e-12)  # 3-1 or worse, ties included
    assert multinomial_sf(8, 4, 2) == 1.0
    assert multinomial_sf(17, 4, 2) == 0.0  # nothing is more uneven than 4-0


@pytest.mark.parametrize(("n", "k"), [(1, 2), (2, 3), (3, 3), (4, 2), (5, 3), (6, 4), (7, 2), (5, 5)])
def test_multinomial_sf_counts_every_placement(n: int, k: int) -> None:
    placements = [Counter(p) for p in itertools.product(range(k), repeat=n)]
    for least in range(n * n + 2):
        hits = sum(sum(c * c for c in placed.values()) >= least for placed in placements)
        assert multinomial_sf(least, n, k) == pytest.approx(hits / k**n, rel=1e-12, abs=1e-300), least


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("per_pod", range(1, 11))
def test_multinomial_sf_sums_every_count_vector_at_1_to_10_clients_per_pod(per_pod: int, k: int) -> None:
    n = per_pod * k
    tail = by_compositions(n, k)
    assert tail[min(tail)] == 1
    for least, chance in tail.items():
        assert multinomial_sf(least, n, k) == pytest.approx(float(chance), rel=1e-10), least


def test_multinomial_sf_rounds_split_votes_up_to_the_next_whole_placement() -> None:
    # votes 2.5 / 1.5 (Σ 8.5): whole placements reach it from 3-1 (Σ 10) up
    assert multinomial_sf(8.5, 4, 2) == multinomial_sf(10, 4, 2)
    # float noise above a whole sum is a tie, not a step past it
    assert multinomial_sf(10 + 1e-12, 4, 2) == multinomial_sf(10, 4, 2)
    assert multinomial_sf(10.01, 4, 2) == multinomial_sf(16, 4, 2)


def test_multinomial_sf_edges() -> None:
    assert multinomial_sf(0, 0, 3) == 1.0
    assert multinomial_sf(25, 5, 1) == 1.0 and multinomial_sf(26, 5, 1) == 0.0
    assert multinomial_sf(900, 30, 3) == pytest.approx(3.0**-29, rel=1e-10)  # all 30 on one pod
    with pytest.raises(ValueError, match="k >= 1 pods"):
        multinomial_sf(1, 3, 0)
    with pytest.raises(ValueError, match="n >= 0 clients"):
        multinomial_sf(1, -1, 3)


@pytest.mark.parametrize(("n", "k", "square_sum"), [(12, 3, 60), (20, 4, 118), (30, 10, 120), (9, 3, 41), (40, 5, 360)])
def test_monte_carlo_agrees_with_exact(n: int, k: int, square_sum: int) -> None:
    exact = multinomial_sf(square_sum, n, k)
    estimate = multinomial_sf_monte_carlo(square_sum, n, k)
    standard_error = math.sqrt(exact * (1 - exact) / MONTE_CARLO_DRAWS)
    assert 0.005 < exact < 0.5  # the range where the verdict turns
    assert estimate == pytest.approx(exact, abs=4 * standard_error + 1 / MONTE_CARLO_DRAWS)


def test_monte_carlo_is_seeded_from_the_clients_and_pods() -> None:
    estimate = multinomial_sf_monte_carlo(60, 12, 3, draws=2_000)
    assert multinomial_sf_monte_carlo(60, 12, 3, draws=2_000) == estimate
    assert multinomial_sf_monte_carlo(60, 12, 3, draws=2_000, seed=monte_carlo_seed(12, 3)) == estimate
    assert monte_carlo_seed(12, 3) != monte_carlo_seed(3, 12)
    assert multinomial_sf_monte_carlo(144, 12, 3, draws=100) == pytest.approx(1 / 101, abs=0.02)  # never 0
    with pytest.raises(ValueError, match="draws"):
        multinomial_sf_monte_carlo(60, 12, 3, draws=0)


@pytest.mark.parametrize(
    ("n", "k", "statistic", "rel"),
    [(600, 3, 5.991, 0.02), (600, 3, 9.21, 0.02), (240, 4, 7.815, 0.02), (240, 4, 11.345, 0.05), (1000, 2, 6.635, 0.1)],
)
def test_exact_agrees_with_chi_square_at_many_clients(n: int, k: int, statistic: float, rel: float) -> None:
    # the chi-square statistic is k/n Σx² - n, so Σx² = (statistic + n) n / k
    assert multinomial_sf((statistic + n) * n / k, n, k) == pytest.approx(chi_square_sf(statistic, k - 1), rel=rel)


def test_placement_shapes() -> None:
    assert [placement_shapes(n, 2) for n in range(6)] == [1, 1, 2, 2, 3, 3]
    assert placement_shapes(20, 3) == 44
    assert placement_shapes(30, 30) == 5604  # every partition of 30
    assert placement_shapes(60, 10) == 195_491
    assert placement_shapes(0, 1) == 1
