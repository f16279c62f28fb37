"""Shared pytest configuration. Fixtures live in test modules or in `tests/*_fixtures.py`,
except the two below: the torch-thread one most torch-heavy modules use, and the mini claims
file (tests/mini_claims.yaml) for tests that need a small claims file.

The fast loop is `pytest -m "not slow"`: tests that train models, need SLURM, render or read
a PDF, drive a browser or build the wheel are marked `slow` (pyproject.toml)."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mini import MINI_CLAIMS


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module's tests: on a shared 2-core machine a
    multi-threaded BLAS spin-waits for busy cores on every small call, so many tiny matmuls
    and CNN steps run several times (up to 100x) slower with two threads than with one."""
    from runners.classify import cpu_threads  # imports torch: only when a module asks

    with cpu_threads(1):
        yield


@pytest.fixture
def mini_claims(tmp_path: Path) -> Path:
    """A copy of tests/mini_claims.yaml in the test's own folder (a test may edit it)."""
    return Path(shutil.copy(MINI_CLAIMS, tmp_path / "claims.yaml"))


@pytest.fixture(autouse=True)
def _run_in_a_scratch_directory(tmp_path_factory, monkeypatch) -> None:
    """Every test runs in a fresh scratch directory: a verb that writes to the current
    directory by default (`audit check`'s verdicts.json, `audit run`'s runs/ and reports/)
    must never write into the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
