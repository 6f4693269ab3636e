# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one polling loop the Kubernetes modules wait with (objects ready, objects gone).

The caller says which items are still pending (one call per round, so it can read them all
concurrently); the loop stops as soon as nothing is pending or the deadline has passed. The clock and
sleep are parameters so unit tests run it without waiting.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

POLL_SECONDS = 1.0


def wait_until(pending, still_pending, deadline, *, interval=POLL_SECONDS, clock=time.monotonic, sleep=time.sleep):
    """Call ``still_pending(items)`` until it returns nothing or ``deadline`` (a clock value) passes.

    ``still_pending`` returns the items that are not done yet (and may raise to stop the wait, e.g.
    when an object reports a failure). Returns the items still pending at the deadline: [] on success.
    """
    pending = list(pending)
    while pending:
        pending = list(still_pending(pending))
        if not pending:
            break
        now = clock()
        if now >= deadline:
            break
        sleep(min(interval, deadline - now))
    return pending
