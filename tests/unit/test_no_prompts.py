"""No prompts anywhere: every playbook runs unattended, from ansible-playbook in CI as from an AWX job
template, where nobody can answer a prompt (a job that waits for one hangs until its timeout).

Every YAML file under playbooks/ and roles/ is parsed and walked (plays, pre_tasks/tasks/post_tasks/handlers,
blocks with their rescue and always sections): no `vars_prompt`, no `pause` that waits for Enter (without
`seconds` or `minutes`), no `prompt` for pause at all. Destructive playbooks take their confirmation as a
variable (AWX survey or extra var) and refuse without it, before anything else runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.helpers.content import (
    INCLUDE_ROLE,
    PAUSE,
    PLAYBOOKS,
    REPO_ROOT,
    ROLES,
    _task_file,
    content_files,
    expand_role,
    file_tasks,
    free_form_args,
    is_play,
    load_yaml,
    play_task_lists,
    task_action,
)


def _mappings_with(data, key: str):
    if isinstance(data, dict):
        if key in data:
            yield data
        for value in data.values():
            yield from _mappings_with(value, key)
    elif isinstance(data, list):
        for value in data:
            yield from _mappings_with(value, key)


def prompt_problems(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """What in one file would stop an unattended run, each as '<file>: <where>: <what>'."""
    rel = path.relative_to(root)
    data = load_yaml(path)
    problems = []
    for found in _mappings_with(data, "vars_prompt"):
        where = f"play {found.get('name', '<unnamed>')!r}" if is_play(found) else "a mapping"
        problems.append(f"{rel}: {where}: vars_prompt (take the value as a variable: survey or extra var)")
    for task, where in file_tasks(path):
        module, args = task_action(task)
        if module not in PAUSE:
            continue
        options = free_form_args(args)
        if "prompt" in options:
            problems.append(f"{rel}: {where}: {module} with prompt")
        if not ("seconds" in options or "minutes" in options):
            problems.append(f"{rel}: {where}: {module} without seconds or minutes waits for Enter")
    return problems


def test_no_prompts_in_playbooks_and_roles():
    files = content_files()
    tasks = sum(len(list(file_tasks(path))) for path in files)
    # The walk must really see the content (a loader that silently skipped everything would pass).
    assert len(files) > 80 and tasks > 250, (len(files), tasks)
    problems = [p for path in files for p in prompt_problems(path)]
    assert not problems, "\n".join(problems)


BAD = """
- name: Asks
  hosts: all
  vars_prompt:
    - name: answer
      prompt: Really?
  tasks:
    - name: Waits for Enter
      ansible.builtin.pause:
    - name: Inside a block
      block:
        - name: Fine
          ansible.builtin.pause:
            seconds: 5
      rescue:
        - name: Prompts with a timeout
          ansible.builtin.pause:
            prompt: Continue?
            seconds: 30
      always:
        - name: Free form, no time
          pause: echo=no
    - name: Action form
      action: ansible.builtin.pause
    - name: Minutes are a time
      ansible.legacy.pause: minutes=1
"""


def test_the_scan_finds_every_kind_of_prompt(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(BAD)
    problems = prompt_problems(path, root=tmp_path)
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert "play 'Asks': vars_prompt" in text
    assert "Waits for Enter: ansible.builtin.pause without seconds" in text
    assert "Inside a block / rescue: Prompts with a timeout: ansible.builtin.pause with prompt" in text
    assert "Inside a block / always: Free form, no time: pause without seconds" in text
    assert "Action form: ansible.builtin.pause without seconds" in text
    assert "Fine" not in text and "Minutes" not in text


# ---- destructive playbooks refuse without their confirmation variable --------------------------------------

DESTRUCTIVE = {"reset.yml": "anvil_reset_confirm", "restore.yml": "anvil_restore_confirm"}


def first_task(playbook: Path) -> tuple[dict, Path]:
    """The first task a playbook runs (through its first role or include_role), and the file it is in."""
    for play in load_yaml(playbook):
        for role in play.get("roles", []) or []:
            name = role.get("role", role.get("name")) if isinstance(role, dict) else role
            for short in expand_role(name):
                path = _task_file(ROLES / short / "tasks", "main")
                if path:
                    return _descend(path)
        for _key, tasks in play_task_lists(play):
            if tasks:
                return _descend_task(tasks[0], playbook)
    raise AssertionError(f"{playbook} runs no task")


def _descend(path: Path) -> tuple[dict, Path]:
    return _descend_task(next(iter(file_tasks(path)))[0], path)


def _descend_task(task: dict, path: Path) -> tuple[dict, Path]:
    if "block" in task:
        return _descend_task(task["block"][0], path)
    module, args = task_action(task)
    if module in INCLUDE_ROLE:
        (role,) = expand_role(args["name"])
        return _descend(_task_file(ROLES / role / "tasks", str(args.get("tasks_from", "main"))))
    return task, path


@pytest.mark.parametrize("playbook", sorted(DESTRUCTIVE))
def test_destructive_playbooks_refuse_without_confirmation(playbook):
    anvil_var = DESTRUCTIVE[playbook]
    task, path = first_task(PLAYBOOKS / playbook)
    module, args = task_action(task)
    where = f"{path.relative_to(REPO_ROOT)}: {task.get('name')}"
    assert module in ("ansible.builtin.assert", "ansible.builtin.fail"), f"{playbook} starts with {module} ({where})"
    condition = yaml.safe_dump([args.get("that") if module.endswith("assert") else None, task.get("when")])
    # The check reads the confirmation, directly or as the role variable that defaults to it.
    defaults_file = path.parents[1] / "defaults" / "main.yml"
    defaults = load_yaml(defaults_file) if defaults_file.is_file() else {}
    role_vars = [v for v, d in (defaults or {}).items() if isinstance(d, str) and re.search(rf"\b{anvil_var}\b", d)]
    names = [anvil_var, *role_vars]
    assert any(re.search(rf"\b{n}\b", condition) for n in names), f"{where} does not check {' or '.join(names)}"
    # Without the variable the confirmation is empty, so the check refuses.
    for name in role_vars:
        assert re.search(r"default\((''|\"\")\)", defaults[name]), f"{defaults_file}: {name} must default to ''"
    assert "yes" not in str(defaults.get(anvil_var, "")), f"{defaults_file} confirms {anvil_var} by default"
    # The message says which variable to set.
    assert anvil_var in str(args.get("fail_msg", args.get("msg", ""))), f"{where}: the message must name {anvil_var}"
