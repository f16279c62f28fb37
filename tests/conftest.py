"""Shared pytest configuration. Fixtures live in test modules or in `tests/*_fixtures.py`,
except the one below, which most torch-heavy modules use."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module's tests: on a shared 2-core machine a
    multi-threaded BLAS spin-waits for busy cores on every small call, so many tiny matmuls
    and CNN steps run several times (up to 100x) slower with two threads than with one."""
    from runners.classify import cpu_threads  # imports torch: only when a module asks

    with cpu_threads(1):
        yield
