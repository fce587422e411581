"""The one backoff: waits between attempts at the broker or Redis while they do not answer."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

FIRST_DELAY = 0.5
MAX_DELAY = 10.0
JITTER = 0.1


def backoff_delays(
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    jitter: float = JITTER,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Waits between attempts: `first`, doubling up to `cap`, each within ±`jitter` of that.

    The jitter keeps several workers that lost the same server together from knocking in step.
    """
    delay = first
    while True:
        yield delay * (1 + jitter * (2 * rng() - 1))
        delay = min(cap, delay * 2)
