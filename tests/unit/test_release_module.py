"""Unit tests of the app_release module's own helpers (no cluster): echoed arguments never hold secrets."""

from ansible_collections.anvil.cluster.plugins.modules import app_release

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}


def test_safe_params_redacts_secrets_in_mappings_and_yaml_text():
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata: {token: c2VjcmV0}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    )
    shown = app_release.safe_params({"name": "r", "definitions": [SECRET, CM, text]})["module_args"]
    assert "hunter2" not in str(shown) and "c2VjcmV0" not in str(shown)
    assert shown["definitions"][1] == CM
    assert [d["kind"] for d in shown["definitions"]] == ["Secret", "ConfigMap", "Secret", "ConfigMap"]
    assert shown["name"] == "r"


def test_safe_params_leaves_other_sources_alone():
    assert app_release.safe_params({"src": "/x", "definitions": None})["module_args"] == {
        "src": "/x",
        "definitions": None,
    }
    # Unparseable YAML text is echoed as is (the module fails on it anyway).
    assert app_release.safe_params({"definitions": ["a: [b"]})["module_args"]["definitions"] == ["a: [b"]
