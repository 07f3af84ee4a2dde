"""Latency percentiles in fixed memory, mergeable across load-generator processes.

A long run records millions of request latencies; keeping them all to sort at the end does not fit, and
several load-generator processes each hold their own. So latencies go into an HDR-style histogram: each power
of two between 10 µs and 10 min is cut into 64 equal buckets, so a bucket is at most 1/64 of its value wide
and the middle of a bucket is within 1/128 (≈0.8%) of any value in it, whatever the scale. 26 powers of two x
64 buckets is 1,664 counters, whatever the number of samples; histograms with the same layout merge by adding
counters, and travel as sparse JSON. The smallest and largest values are kept exactly. Values below 10 µs
share the first bucket and values above 10 min the last one: percentiles there are only clamped to the exact
min and max.

The balance check asks how often placing n clients on k pods at random is at least as uneven as a run was.
The chi-square approximation to that (``chi_square_sf``) is good with several clients per pod and rough
below about five; with few clients the question is answered exactly instead (``multinomial_sf``: every
distinct shape of a placement, weighted by how many placements have it, while there are few enough shapes),
or by a seeded Monte-Carlo draw where there are too many shapes (``multinomial_sf_monte_carlo``). Both order
placements by the sum of squared counts, which for fixed n and k orders them as the chi-square statistic does.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

__all__ = [
    "MONTE_CARLO_DRAWS",
    "RELATIVE_PRECISION",
    "Histogram",
    "chi_square_sf",
    "monte_carlo_seed",
    "multinomial_sf",
    "multinomial_sf_monte_carlo",
    "placement_shapes",
    "summarize",
]

_LOWEST = 1e-5  # seconds: 10 µs
_HIGHEST = 600.0  # seconds: 10 min
_SUB_BUCKETS = 64  # linear buckets per power of two
_BINADES = math.ceil(math.log2(_HIGHEST / _LOWEST))  # 26
_BUCKETS = _BINADES * _SUB_BUCKETS

# a percentile between 10 µs and 10 min is within 1/128 of the true value (at worst, at the bottom of a bucket);
# 1% states that bound with room for float rounding
RELATIVE_PRECISION = 0.01


def _index(seconds: float) -> int:
    scaled = seconds / _LOWEST
    if scaled < 1.0:
        return 0
    mantissa, exponent = math.frexp(scaled)  # scaled = mantissa * 2**exponent, 0.5 <= mantissa < 1
    binade = exponent - 1
    if binade >= _BINADES:
        return _BUCKETS - 1
    sub = min(int((2.0 * mantissa - 1.0) * _SUB_BUCKETS), _SUB_BUCKETS - 1)
    return binade * _SUB_BUCKETS + sub


def _middle(index: int) -> float:
    binade, sub = divmod(index, _SUB_BUCKETS)
    return _LOWEST * 2.0**binade * (1.0 + (sub + 0.5) / _SUB_BUCKETS)


class Histogram:
    """Latencies in seconds, within 1% (1/128) from 10 µs to 10 min, in 1,664 counters."""

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    @property
    def count(self) -> int:
        return self._count

    @property
    def min(self) -> float:
        self._need_samples()
        return self._min

    @property
    def max(self) -> float:
        self._need_samples()
        return self._max

    @property
    def mean(self) -> float:
        self._need_samples()
        return self._sum / self._count

    def record(self, seconds: float, times: int = 1) -> None:
        """Count ``times`` samples of ``seconds``."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a latency must be a finite number of seconds >= 0, not {seconds!r}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        self._counts[_index(seconds)] += times
        self._count += times
        self._sum += seconds * times
        self._min = min(self._min, seconds)
        self._max = max(self._max, seconds)

    def percentile(self, p: float) -> float:
        """The nearest-rank p-th percentile (0 <= p <= 100) in seconds; 0 and 100 give the exact min, max."""
        if not 0 <= p <= 100:
            raise ValueError(f"a percentile is between 0 and 100, not {p}")
        self._need_samples()
        # the rank of the nearest-rank method; the epsilon keeps 90% of 10 at 9 despite float rounding
        rank = max(1, math.ceil(p * self._count / 100 - 1e-9))
        if rank == 1:
            return self._min
        if rank >= self._count:
            return self._max
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(max(_middle(index), self._min), self._max)
        raise AssertionError("bucket counts do not add up to the sample count")  # pragma: no cover

    def merge(self, other: Histogram) -> None:
        """Add another histogram's samples to this one (every Histogram has the same layout)."""
        for index, n in enumerate(other._counts):
            if n:
                self._counts[index] += n
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def to_json(self) -> dict[str, Any]:
        """A sparse, JSON-serialisable form: the layout, the exact figures and the non-empty buckets."""
        return {
            "lowest": _LOWEST,
            "highest": _HIGHEST,
            "sub_buckets": _SUB_BUCKETS,
            "count": self._count,
            "sum": self._sum,
            "min": self._min if self._count else None,
            "max": self._max if self._count else None,
            "buckets": [[index, n] for index, n in enumerate(self._counts) if n],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        layout = (data.get("lowest"), data.get("highest"), data.get("sub_buckets"))
        if layout != (_LOWEST, _HIGHEST, _SUB_BUCKETS):
            raise ValueError(
                f"histogram layout {layout} (lowest, highest, sub_buckets) is not this version's "
                f"{(_LOWEST, _HIGHEST, _SUB_BUCKETS)}: it was written by another version of the harness"
            )
        h = cls()
        for index, n in data["buckets"]:
            if not 0 <= index < _BUCKETS or n < 1:
                raise ValueError(f"histogram bucket {index} with count {n} is out of range")
            h._counts[index] += n
        h._count = int(data["count"])
        if sum(h._counts) != h._count:
            raise ValueError(f"histogram buckets add up to {sum(h._counts)}, not its count {h._count}")
        h._sum = float(data["sum"])
        if h._count:
            h._min, h._max = float(data["min"]), float(data["max"])
        return h

    def _need_samples(self) -> None:
        if not self._count:
            raise ValueError("the histogram is empty")


def summarize(h: Histogram) -> dict[str, Any]:
    """count, and p50, p90, p99 and max in milliseconds (None when there are no samples)."""
    if not h.count:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "count": h.count,
        "p50": round(h.percentile(50) * 1000, 3),
        "p90": round(h.percentile(90) * 1000, 3),
        "p99": round(h.percentile(99) * 1000, 3),
        "max": round(h.max * 1000, 3),
    }


def chi_square_sf(x: float, df: int) -> float:
    """P(X ≥ x) for X chi-square distributed with ``df`` degrees of freedom (closed form for whole ``df``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, not {df}")
    if x <= 0:
        return 1.0
    y = x / 2
    if df % 2 == 0:  # Q(k, y) = e^-y Σ_{i<k} y^i / i!
        term = total = 1.0
        for i in range(1, df // 2):
            term *= y / i
            total += term
        return min(1.0, math.exp(-y) * total)
    # Q(k + 1/2, y) = erfc(√y) + e^-y Σ_{i<k} y^(i+1/2) / Γ(i + 3/2)
    total = math.erfc(math.sqrt(y))
    term = math.exp(-y) * math.sqrt(y) / math.gamma(1.5)
    for i in range((df - 1) // 2):
        total += term
        term *= y / (i + 1.5)
    return min(1.0, total)


# random placements drawn by multinomial_sf_monte_carlo: a chance near the 1% threshold comes out within about
# ±0.14 percentage points (two standard errors)
MONTE_CARLO_DRAWS = 20_000

# a sum of squared votes within this relative distance above a whole number counts as that number: split votes
# add up fractions, and float rounding must not lift a tie with a whole placement above it
_TIE_TOLERANCE = 1e-9


def placement_shapes(n: int, k: int) -> int:
    """The distinct shapes of placing ``n`` clients on ``k`` pods: partitions of n into at most k parts.

    This is the number of terms ``multinomial_sf`` sums (before pruning), so its cost.
    """
    _need_placement(n, k)
    # ways[m][j]: partitions of m into at most j parts (either fewer than j parts, or j parts each at least 1)
    ways = [[1] * (k + 1)] + [[0] * (k + 1) for _ in range(n)]
    for m in range(1, n + 1):
        for j in range(1, k + 1):
            ways[m][j] = ways[m][j - 1] + (ways[m - j][j] if m >= j else 0)
    return ways[n][k]


def multinomial_sf(square_sum: float, n: int, k: int) -> float:
    """P(Σ Xᵢ² ≥ ``square_sum``) for n clients placed on k pods uniformly at random (X the counts), exactly.

    Sums the probability of every placement shape (counts in decreasing order) whose square sum reaches
    ``square_sum``: n! / Π xᵢ! placements per count vector, times the orderings of the shape over the pods,
    over kⁿ. Weights are kept as logarithms, so the result is exact up to float rounding (about 1e-12
    relative). Cost grows with ``placement_shapes(n, k)``; branches that cannot reach ``square_sum`` are cut.
    """
    _need_placement(n, k)
    least = _least_square_sum(square_sum)
    even, extra = divmod(n, k)
    if least <= extra * (even + 1) ** 2 + (k - extra) * even**2:  # the most even placement reaches it
        return 1.0
    if least > n * n:
        return 0.0
    log_fact = [math.lgamma(i + 1) for i in range(max(n, k) + 1)]
    leaf = log_fact[n] + log_fact[k] - n * math.log(k)
    terms: list[float] = []

    def walk(remaining: int, largest: int, used: int, squares: int, log_weight: float, run: int) -> None:
        if remaining == 0:
            if squares >= least:
                terms.append(math.exp(leaf + log_weight - log_fact[k - used]))
            return
        slots = k - used
        full, rest = divmod(remaining, largest)
        if squares + full * largest * largest + rest * rest < least:
            return  # even piling the rest up as high as allowed stays below
        for x in range(min(largest, remaining), 0, -1):
            if x * slots < remaining:
                break  # the remaining pods, none above x, cannot hold the rest
            repeat = run + 1 if x == largest and used else 1  # ties of equal counts: divide by their orderings
            walk(remaining - x, x, used + 1, squares + x * x, log_weight - log_fact[x] - math.log(repeat), repeat)

    walk(n, n, 0, 0, 0.0, 0)
    return min(1.0, math.fsum(terms))


def monte_carlo_seed(n: int, k: int) -> int:
    """The seed of ``multinomial_sf_monte_carlo`` for n clients on k pods: the same run, the same verdict."""
    return 1_000_003 * n + k


def multinomial_sf_monte_carlo(
    square_sum: float, n: int, k: int, draws: int = MONTE_CARLO_DRAWS, seed: int | None = None
) -> float:
    """``multinomial_sf`` estimated from ``draws`` random placements, seeded (by default from n and k).

    The estimate is (hits + 1) / (draws + 1), the usual Monte-Carlo p-value: never 0, and never below the
    chance it estimates by more than sampling error.
    """
    _need_placement(n, k)
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    least = _least_square_sum(square_sum)
    rng = random.Random(monte_carlo_seed(n, k) if seed is None else seed)
    pods = range(k)
    hits = 0
    for _ in range(draws):
        counts = Counter(rng.choices(pods, k=n)).values()
        hits += sum(c * c for c in counts) >= least
    return (hits + 1) / (draws + 1)


def _least_square_sum(square_sum: float) -> int:
    """The smallest whole square sum at least ``square_sum`` (with float noise above a whole number ignored)."""
    return math.ceil(square_sum - _TIE_TOLERANCE * max(1.0, abs(square_sum)))


def _need_placement(n: int, k: int) -> None:
    if n < 0 or k < 1:
        raise ValueError(f"a placement needs n >= 0 clients and k >= 1 pods, not n={n}, k={k}")
