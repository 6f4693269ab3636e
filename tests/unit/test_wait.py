"""The one way tests wait: by condition, with a deadline."""

from __future__ import annotations

import time

import pytest

from tests.helpers.wait import wait_until


def test_returns_the_first_truthy_value():
    values = iter([0, "", None, "ready"])
    assert wait_until(lambda: next(values), 5, "a value") == "ready"


def test_a_check_that_raises_is_not_yet():
    calls = []

    def check():
        calls.append(1)
        if len(calls) < 3:
            raise AssertionError("not yet")
        return True

    assert wait_until(check, 5, "the third call") is True
    assert len(calls) == 3


def test_timeout_names_what_and_the_last_error():
    started = time.monotonic()

    def check():
        raise ValueError("still 404")

    with pytest.raises(AssertionError, match=r"timed out after 0.3s waiting for the object; last: ValueError"):
        wait_until(check, 0.3, "the object")
    assert time.monotonic() - started < 2


def test_the_check_runs_at_the_deadline():
    calls = []
    with pytest.raises(AssertionError, match="last: False"):
        wait_until(lambda: calls.append(time.monotonic()) or False, 0.25, "never", interval=10)
    assert len(calls) == 2  # once at the start, once when the deadline came
