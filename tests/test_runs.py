"""Judging and reporting a run as its records stream by: no record is kept (a run with events keeps slimmed
copies for the scaling report), shown with a probe that can see a consumer that does keep them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checks import Thresholds, evaluate
from harness.client.records import SessionRecord, read_run_sessions
from harness.report import load_run, render_html
from harness.runs import judge
from harness.topology import load_topology
from tests.report import failing_run, scaling_run

_from_json = SessionRecord.from_json
_ONLY_THE_PROBE = 3
HANDLING = 2  # records a stream holds at once: the one in hand, and the one before it still named by a loop


class KeptProbe:
    """Made in place of ``SessionRecord.from_json``: before each record is made, counts the records made earlier
    that something other than the probe still holds; ``most`` is the largest such count seen. A record nothing
    else holds cannot be reached again, so the probe lets it go."""

    def __init__(self) -> None:
        self.made = 0
        self.most = 0
        self._held: list[SessionRecord] = []

    def reset(self) -> None:
        self.made = self.most = 0
        self._held.clear()

    def __call__(self, data: dict[str, Any]) -> SessionRecord:
        # a record only the probe holds has three references here: the probe's list, the loop's name and
        # getrefcount's argument
        self._held = [record for record in self._held if sys.getrefcount(record) > _ONLY_THE_PROBE]
        self.most = max(self.most, len(self._held))
        record = _from_json(data)
        self._held.append(record)
        self.made += 1
        return record


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeptProbe]:
    found = KeptProbe()
    monkeypatch.setattr(SessionRecord, "from_json", staticmethod(found))
    yield found


def test_a_consumer_that_keeps_the_records_is_seen_by_the_probe(tmp_path: Path, probe: KeptProbe) -> None:
    run_dir = failing_run(tmp_path)
    probe.reset()
    records = list(read_run_sessions(run_dir))
    evaluate(records, ["app-0", "app-1", "app-2"], Thresholds())
    assert len(records) == probe.made == 600
    assert probe.most == 599  # every record made before the last one was still held


def test_judging_and_reporting_a_steady_run_keep_no_record(tmp_path: Path, probe: KeptProbe) -> None:
    run_dir = failing_run(tmp_path)  # judged once to write it; judged again here, under the probe
    probe.reset()
    judgement = judge(run_dir, load_topology("no-affinity"), backend="local", pods=["app-0", "app-1", "app-2"])
    assert judgement.summary["sessions"] == 600 and judgement.summary["checks"]["continuity"]["measured"] == "fail"
    # one pass to judge, two for the report it writes (the span, then the counts), none held
    assert probe.made == 3 * 600 and probe.most <= HANDLING
    probe.reset()
    page = render_html(load_run(run_dir))
    assert "AS EXPECTED" in page and "NOT AS EXPECTED" not in page  # the negative control fails as expected
    assert probe.made == 2 * 600 and probe.most <= HANDLING


def test_a_run_with_events_keeps_slimmed_copies_and_not_the_records(tmp_path: Path, probe: KeptProbe) -> None:
    run_dir = scaling_run(tmp_path)
    probe.reset()
    pods = ["app-0", "app-2", "app-3", "app-4", "app-5"]
    judgement = judge(run_dir, load_topology("nginx-hash"), backend="local", pods=pods)
    assert [e["id"] for e in judgement.summary["events"]] == ["e1", "e2"]
    assert judgement.summary["events"][0]["clients_compared"] > 0  # the scaling report read the histories
    # one pass to judge, three for the report (the span, the counts, each client's moves at the events)
    assert probe.made == 4 * judgement.summary["sessions"] and probe.most <= HANDLING
    first = next(read_run_sessions(run_dir))
    slim = first.slimmed()
    assert first.counts and first.sid is not None
    assert slim.counts == {} and slim.sid is None and slim.pods == first.pods and slim.started == first.started
