"""Unit tests of the app_release action plugin: `src` is found and read on the controller."""

from types import SimpleNamespace

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible_collections.anvil.cluster.plugins.action.app_release import ActionModule


def make_action(args, transport, needle):
    task = SimpleNamespace(args=args, async_val=0, check_mode=False, action="app_release")
    task.resolved_action = "anvil.cluster.app_release"
    connection = SimpleNamespace(transport=transport, _shell=SimpleNamespace(tmpdir=None))
    action = ActionModule(task, connection, None, None, None)
    calls = []

    def find_needle(kind, path):
        assert kind == "files"
        if needle is None:
            raise AnsibleError("not found")
        return needle

    def execute_module(module_name=None, module_args=None, task_vars=None):
        calls.append((module_name, module_args))
        return {"changed": False}

    action._find_needle = find_needle
    action._execute_module = execute_module
    return action, calls


@pytest.fixture
def manifests(tmp_path):
    (tmp_path / "a.yml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    )
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_remote_connection_sends_manifests_read_on_controller(manifests):
    action, calls = make_action({"name": "r", "namespace": "n", "src": "files/app"}, "ssh", str(manifests))
    action.run(task_vars={})
    name, args = calls[0]
    assert name == "anvil.cluster.app_release"
    assert "src" not in args and [d["metadata"]["name"] for d in args["definitions"]] == ["a"]


def test_local_connection_passes_the_resolved_path(manifests):
    action, calls = make_action({"name": "r", "namespace": "n", "src": "app"}, "local", str(manifests))
    action.run(task_vars={})
    assert calls[0][1]["src"] == str(manifests)


def test_path_not_on_controller_is_left_to_the_module():
    action, calls = make_action({"name": "r", "namespace": "n", "src": "/on/target"}, "ssh", None)
    action.run(task_vars={})
    assert calls[0][1]["src"] == "/on/target" and "definitions" not in calls[0][1]


def test_bad_yaml_on_controller_fails_without_running_the_module(tmp_path):
    (tmp_path / "bad.yml").write_text("kind: [unclosed")
    action, calls = make_action({"name": "r", "namespace": "n", "src": "x"}, "ssh", str(tmp_path))
    result = action.run(task_vars={})
    assert result["failed"] and "not valid YAML" in result["msg"] and calls == []
