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
  - Takes the start marks a playbook recorded for its phases, in order, and the time the last phase ended,
    and returns one line per phase with its duration in seconds, then a C(total) line.
  - Each phase lasts from its own mark to the next phase's mark; the last one lasts until O(end).
  - C(playbooks/site.yml) records a mark at the start of every phase and prints the report in its summary.
positional: end
options:
  _input:
    description: Phase start marks, in the order they were recorded. No marks give no lines.
    type: list
    elements: dict
    required: true
    suboptions:
      phase:
        description: Name of the phase.
        type: str
        required: true
      at:
        description: When the phase started, in seconds since the epoch.
        type: float
        required: true
  end:
    description: When the last phase ended, in seconds since the epoch.
    type: float
    required: true
"""

EXAMPLES = r"""
- name: Mark the start of the preflight phase
  ansible.builtin.set_fact:
    anvil_phase_marks: "{{ [{'phase': 'preflight', 'at': now(utc=true).timestamp()}] }}"
  delegate_to: localhost
  delegate_facts: true
  run_once: true

- name: Mark the start of the os phase
  ansible.builtin.set_fact:
    anvil_phase_marks: >-
      {{ hostvars['localhost']['anvil_phase_marks']
         + [{'phase': 'os', 'at': now(utc=true).timestamp()}] }}
  delegate_to: localhost
  delegate_facts: true
  run_once: true

- name: Show the time per phase
  ansible.builtin.debug:
    msg: "{{ hostvars['localhost']['anvil_phase_marks'] | anvil.cluster.phase_report(now(utc=true).timestamp()) }}"
  run_once: true
# => ["  preflight         4.2 s", "  os               61.0 s", "  total            65.2 s"]
"""

RETURN = r"""
_value:
  description:
    - One line per phase, the phase name left-aligned in 14 characters and its duration in seconds with one
      decimal, such as C(  preflight         4.2 s), then the same for C(total) (from the first mark to O(end)).
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
