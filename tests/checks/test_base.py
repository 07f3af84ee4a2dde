from __future__ import annotations

import json
from typing import Any

import pytest

from harness.checks import CheckResult, Thresholds
from harness.checks.base import pct
from harness.errors import UsageError


def test_default_thresholds_are_strict() -> None:
    th = Thresholds()
    assert th.max_violation_rate == 0.0
    assert th.affinity_run == 15
    assert th.min_affinity_clients == 1
    assert th.max_affinity_broken_rate == 0.0
    assert (th.min_jain, th.max_ratio, th.allow_idle_pods, th.min_balance_sessions) == (0.8, 1.5, False, 20)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_violation_rate": -0.1},
        {"max_affinity_broken_rate": 1.5},
        {"affinity_run": 1},
        {"min_affinity_clients": 0},
        {"min_jain": 0.0},
        {"min_jain": 1.2},
        {"max_ratio": 0.9},
        {"min_balance_sessions": 0},
    ],
)
def test_nonsense_thresholds_are_refused_with_the_field_named(bad: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(bad))):
        Thresholds(**bad)


def test_check_result_round_trips_through_json() -> None:
    result = CheckResult("balance", "fail", "unbalanced", {"jain": 0.5, "per_pod": {"a": 1}}, ["pod a"], ["n"])
    again = CheckResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


def test_check_result_from_json_refuses_an_unknown_verdict() -> None:
    with pytest.raises(UsageError, match="verdict"):
        CheckResult.from_json({"name": "x", "verdict": "ok", "reason": ""})


def test_pct_does_not_round_a_small_rate_to_zero() -> None:
    assert pct(0.0) == "0%"
    assert pct(1.0) == "100%"
    assert pct(0.0001) == "0.01%"
    assert pct(0.0583) == "5.83%"
