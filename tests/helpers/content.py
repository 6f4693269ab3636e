"""Read the collection's playbooks and roles as data: plays, tasks (blocks included), the roles and entry
points a playbook runs, and the roles' argument specs. Static tests of the content use it (no prompts,
job templates against argument specs); nothing here runs Ansible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO_ROOT / "playbooks"
ROLES = REPO_ROOT / "roles"
COLLECTION = "anvil.cluster"

BLOCK_KEYS = ("block", "rescue", "always")


def _names(*modules: str) -> frozenset[str]:
    """A builtin module as a task may name it: short, ansible.builtin.* or ansible.legacy.*."""
    return frozenset(f"{prefix}{m}" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for m in modules)


INCLUDE_ROLE = _names("include_role", "import_role")
INCLUDE_TASKS = _names("include_tasks", "import_tasks")
PAUSE = _names("pause")
IMPORT_PLAYBOOK = _names("import_playbook")


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's tags (!unsafe, !vault) as the plain value they wrap."""


def _tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_Loader.add_multi_constructor("!", _tagged)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_Loader)


def content_files() -> list[Path]:
    """Every YAML file under playbooks/ and roles/ that Ansible reads as YAML (templates/ and files/ of
    roles hold what the roles render or copy, not Ansible content)."""
    found = []
    for top in (PLAYBOOKS, ROLES):
        for path in sorted(top.rglob("*")):
            if path.suffix not in (".yml", ".yaml") or not path.is_file():
                continue
            rel = path.relative_to(REPO_ROOT).parts
            if top == ROLES and len(rel) > 2 and rel[2] in ("templates", "files"):
                continue
            found.append(path)
    return found


def is_play(item: Any) -> bool:
    return isinstance(item, dict) and ("hosts" in item or any(k in item for k in IMPORT_PLAYBOOK))


def iter_tasks(items: Any, where: str = "") -> Iterator[tuple[dict, str]]:
    """(task, where) for every task of a task list, descending into block/rescue/always; `where` names
    the enclosing blocks so a failure points at the task."""
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        name = item.get("name", "<unnamed>")
        if any(k in item for k in BLOCK_KEYS):
            for key in BLOCK_KEYS:
                yield from iter_tasks(item.get(key), f"{where}{name} / {key}: ")
            continue
        yield item, f"{where}{name}"


def play_task_lists(play: dict) -> Iterator[tuple[str, list]]:
    for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
        if isinstance(play.get(key), list):
            yield key, play[key]


def file_tasks(path: Path) -> Iterator[tuple[dict, str]]:
    """Every task of a playbook (all plays, all sections) or of a task file."""
    data = load_yaml(path)
    if not isinstance(data, list):
        return
    if any(is_play(item) for item in data):
        for i, play in enumerate(data):
            if not isinstance(play, dict):
                continue
            for key, tasks in play_task_lists(play):
                yield from iter_tasks(tasks, f"play {i + 1} ({play.get('name', '<unnamed>')}) {key}: ")
    else:
        yield from iter_tasks(data)


def task_action(task: dict) -> tuple[str | None, Any]:
    """(module, arguments) of a task, also for `action:` / `local_action:` given as a string or a mapping."""
    for key in ("action", "local_action"):
        if key in task:
            value = task[key]
            if isinstance(value, dict):
                args = {k: v for k, v in value.items() if k != "module"}
                return value.get("module"), args
            module, _, rest = str(value).partition(" ")
            return module, rest
    keywords = TASK_KEYWORDS
    modules = [k for k in task if k not in keywords]
    if len(modules) == 1:
        return modules[0], task[modules[0]]
    return None, None


# Task keywords of ansible-core (playbook keywords of a task), so what is left is the module.
TASK_KEYWORDS = frozenset(
    """name action local_action args async become become_exe become_flags become_method become_user
    changed_when check_mode collections connection debugger delay delegate_facts delegate_to diff environment
    failed_when ignore_errors ignore_unreachable loop loop_control module_defaults no_log notify poll port
    register remote_user retries run_once tags throttle timeout until vars when listen with_items with_dict
    with_fileglob with_first_found with_together with_subelements with_sequence with_random_choice with_lines
    with_indexed_items with_nested with_flattened with_list with_file with_url with_inventory_hostnames
    with_cartesian with_community.general.filetree""".split()
)


def free_form_args(args: Any) -> dict:
    """Arguments as a mapping, also for the `key=value` free form."""
    if isinstance(args, dict):
        return args
    if isinstance(args, str):
        return dict(m.groups() for m in re.finditer(r"(\w+)=(\S+)", args))
    return {}


# ---- which roles and entry points a playbook runs -----------------------------------------------------


def short_role(name: str) -> str:
    return name[len(COLLECTION) + 1 :] if name.startswith(COLLECTION + ".") else name


def expand_role(name: str) -> list[str]:
    """A role name of the collection; a templated one (cni_{{ anvil_cni }}) stands for every role it can be."""
    name = short_role(str(name))
    if "{{" in name:
        pattern = re.sub(r"\{\{.*?\}\}", "*", name)
        return sorted(p.name for p in ROLES.glob(pattern) if (p / "tasks").is_dir())
    return [name]


@dataclass(frozen=True)
class EntryPoint:
    role: str
    entry: str  # the tasks_from file without .yml ("main" by default)


def _task_file(base: Path, name: str) -> Path | None:
    for candidate in (base / name, base / f"{name}.yml", base / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    return None


def _entries_in_tasks(tasks: Iterator[tuple[dict, str]], task_dir: Path, seen_files: set[Path]) -> set[EntryPoint]:
    found: set[EntryPoint] = set()
    for task, _where in tasks:
        module, args = task_action(task)
        if module in INCLUDE_ROLE and isinstance(args, dict):
            entry = str(args.get("tasks_from", "main")).removesuffix(".yml")
            for role in expand_role(args.get("name", "")):
                found.add(EntryPoint(role, entry))
        elif module in INCLUDE_TASKS:
            target = args.get("file") if isinstance(args, dict) else args
            if isinstance(target, str) and "{{" not in target:
                path = _task_file(task_dir, target)
                if path and path not in seen_files:
                    seen_files.add(path)
                    found |= _entries_in_tasks(file_tasks(path), path.parent, seen_files)
    return found


def role_entry_points(start: set[EntryPoint]) -> set[EntryPoint]:
    """The entry points given and every one they reach: role dependencies (meta/main.yml; a dependency
    is entered at `main`, or at its only documented entry point, as cluster_defaults' `variables`), and the
    include_role/import_role tasks of their task files (followed through include_tasks)."""
    done: set[EntryPoint] = set()
    todo = list(start)
    while todo:
        ep = todo.pop()
        if ep in done:
            continue
        done.add(ep)
        role_dir = ROLES / ep.role
        meta = role_dir / "meta" / "main.yml"
        if meta.is_file():
            for dep in (load_yaml(meta) or {}).get("dependencies", []) or []:
                dep_name = dep.get("role", dep.get("name")) if isinstance(dep, dict) else dep
                for role in expand_role(dep_name):
                    todo.append(EntryPoint(role, default_entry(role)))
        task_file = _task_file(role_dir / "tasks", ep.entry)
        if task_file:
            todo.extend(_entries_in_tasks(file_tasks(task_file), task_file.parent, {task_file}))
    return done


def default_entry(role: str) -> str:
    specs = argument_specs(role)
    if "main" in specs or not specs:
        return "main"
    return next(iter(specs))


def playbook_entry_points(playbook: Path) -> set[EntryPoint]:
    """Every role entry point a playbook runs: roles: of its plays, include_role/import_role in its tasks
    (and in the task files it includes), and all they reach (role_entry_points)."""
    start: set[EntryPoint] = set()
    for play in load_yaml(playbook) or []:
        if not isinstance(play, dict):
            continue
        for role in play.get("roles", []) or []:
            role_name = role.get("role", role.get("name")) if isinstance(role, dict) else role
            for name in expand_role(role_name):
                start.add(EntryPoint(name, default_entry(name)))
        for _key, tasks in play_task_lists(play):
            start |= _entries_in_tasks(iter_tasks(tasks), playbook.parent, set())
    return role_entry_points(start)


# ---- argument specs --------------------------------------------------------------------------------------


def argument_specs(role: str) -> dict[str, dict]:
    path = ROLES / role / "meta" / "argument_specs.yml"
    if not path.is_file():
        return {}
    return (load_yaml(path) or {}).get("argument_specs", {}) or {}


def entry_options(ep: EntryPoint) -> dict[str, dict]:
    spec = argument_specs(ep.role).get(ep.entry) or argument_specs(ep.role).get("main") or {}
    return spec.get("options", {}) or {}
