"""Waiting in tests: by condition, with a deadline, never a fixed sleep.

Every suite (unit, integration, e2e, bench) waits through `wait_until`, so a wait always says what it
waited for and what it saw last when time runs out.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

FIRST_INTERVAL = 0.1
# The pause between checks grows to timeout / CHECKS_PER_TIMEOUT, kept within these bounds.
CHECKS_PER_TIMEOUT = 100
MIN_INTERVAL, MAX_INTERVAL = 0.2, 2.0


def wait_until(check: Callable[[], T], timeout: float, what: str, *, interval: float | None = None) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    A check that raises counts as "not yet" (a command that still fails, an object not created yet).
    The pause between checks starts at 0.1 s and grows to a hundredth of the timeout (at least 0.2 s, at
    most 2 s), so a quick condition is seen at once and a long wait costs few checks; `interval` fixes
    the pause instead (a benchmark that times what it waits for). The check runs once more at the deadline;
    then the wait fails with an AssertionError naming `what` and the last value or error.
    """
    deadline = time.monotonic() + timeout
    pause = interval if interval is not None else FIRST_INTERVAL
    longest = min(MAX_INTERVAL, max(MIN_INTERVAL, timeout / CHECKS_PER_TIMEOUT))
    last: object = None
    while True:
        try:
            value = check()
        except Exception as exc:  # not yet; reported if the deadline passes
            last = exc
        else:
            if value:
                return value
            last = value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(min(pause, left))
        if interval is None:
            pause = min(pause * 1.5, longest)
