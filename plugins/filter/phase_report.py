# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn phase start marks recorded by a playbook into a per-phase timing table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: phase_report
short_description: Per-phase durations from phase start marks
version_added: 0.1.0
description:
  - Takes a list of C({phase, at}) marks (C(at) in seconds since the epoch, in order) and the end time,
    and returns one line per phase with its duration, plus a total line.
positional: end
options:
  _input:
    description: Phase marks in the order they were recorded.
    type: list
    elements: dict
    required: true
  end:
    description: End of the last phase (seconds since the epoch).
    type: float
    required: true
"""

EXAMPLES = r"""
- name: Show phase durations
  ansible.builtin.debug:
    msg: "{{ marks | anvil.cluster.phase_report(now(utc=true).timestamp()) }}"
"""

RETURN = r"""
_value:
  description: Lines such as C(  preflight        4.2 s).
  type: list
  elements: str
"""


def phase_report(marks, end):
    marks = list(marks or [])
    lines = []
    ends = [float(m["at"]) for m in marks[1:]] + [float(end)]
    for mark, stop in zip(marks, ends):
        lines.append("  %-14s %6.1f s" % (mark["phase"], stop - float(mark["at"])))
    if marks:
        lines.append("  %-14s %6.1f s" % ("total", float(end) - float(marks[0]["at"])))
    return lines


class FilterModule(object):
    def filters(self):
        return {"phase_report": phase_report}
