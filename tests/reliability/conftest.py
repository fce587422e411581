"""Fixtures of the fault tests (tests/reliability): simulated inputs and a journal of faults.

The broker, Redis, `kafka_io` and `worker_factory` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faults import Journal, RedisServer, SimulatedInput, simulated_input

from streams.embedded import free_port


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., SimulatedInput]:
    """`simulated(accounts, days, seed, batch)`: a simulated input and its backtest, cached."""
    directory: Path = tmp_path_factory.mktemp("simulated")
    cache: dict[tuple[int, int, int, int], SimulatedInput] = {}

    def make(accounts: int, days: int, seed: int, batch: int = 20) -> SimulatedInput:
        key = (accounts, days, seed, batch)
        if key not in cache:
            cache[key] = simulated_input(directory, accounts, days, seed, batch)
        return cache[key]

    return make


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own (persistent AOF), started; stopped afterwards."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.close()
