"""Fixtures of the report tests: two nights of reports directories (tests.report.reports_dirs), built once and
copied for each test, since every test edits its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.reports_dirs import first_night, second_night


@pytest.fixture(scope="session")
def _two_nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nights")
    second_night(first_night(root / "baseline"), root / "reports")
    return root


@pytest.fixture
def nights(_two_nights: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(baseline, reports): the first and the second night, each a reports directory of its own."""
    shutil.copytree(_two_nights, tmp_path, symlinks=True, dirs_exist_ok=True)
    return tmp_path / "baseline", tmp_path / "reports"
