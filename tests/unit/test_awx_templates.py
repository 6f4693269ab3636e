"""The AWX / Automation Controller job templates of awx/job_templates.yml against the content they run.

Every playbook of playbooks/ has a template; every survey question asks for a real, documented argument of
the roles its playbook runs (their meta/argument_specs.yml, cluster_defaults' `variables`, or the
playbook's own entry point cluster_defaults/playbook_<name>), with a survey type that fits the option's type
and choices that are a subset of the option's; the Kubernetes credential type's injectors are well formed
and name kubernetes.core's own K8S_AUTH_* variables. A renamed or retyped variable breaks a test here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest

from tests.helpers.content import (
    PLAYBOOKS,
    REPO_ROOT,
    ROLES,
    EntryPoint,
    argument_specs,
    entry_options,
    load_yaml,
    playbook_entry_points,
)

AWX = REPO_ROOT / "awx"
DATA = load_yaml(AWX / "job_templates.yml")
TEMPLATES = DATA["anvil_awx_job_templates"]
CREDENTIAL_TYPES = DATA["anvil_awx_credential_types"]
BY_PLAYBOOK = {t["playbook"]: t for t in TEMPLATES}

SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
# Optional text questions whose blank answer ("" or null, depending on the AWX version) the playbook reads
# as "not set"; every other text question is required.
BLANK_IS_UNSET = {"anvil_apps_only"}


def survey_cases():
    return [pytest.param(t, q, id=f"{t['name']}:{q.get('variable')}") for t in TEMPLATES for q in t.get("survey", [])]


@functools.lru_cache(maxsize=None)
def options_for(playbook: str) -> dict[str, tuple[str, dict]]:
    """Every option a playbook's survey may set: (where it is documented, its spec)."""
    found: dict[str, tuple[str, dict]] = {}
    stem = Path(playbook).stem
    entries = [*playbook_entry_points(REPO_ROOT / playbook), EntryPoint("cluster_defaults", f"playbook_{stem}")]
    for ep in sorted(entries, key=lambda e: (e.role, e.entry)):
        for name, spec in entry_options(ep).items():
            found.setdefault(name, (f"roles/{ep.role} entry point {ep.entry}", spec))
    return found


def test_every_playbook_has_one_template():
    playbooks = sorted(str(p.relative_to(REPO_ROOT)) for p in PLAYBOOKS.glob("*.yml"))
    assert sorted(BY_PLAYBOOK) == playbooks
    assert len(BY_PLAYBOOK) == len(TEMPLATES), "two templates run the same playbook"
    assert len({t["name"] for t in TEMPLATES}) == len(TEMPLATES)
    for t in TEMPLATES:
        assert t["name"] == Path(t["playbook"]).stem, t["name"]
        assert t.get("description"), t["name"]
        assert set(t["credentials"]) <= {"machine", "vault", "kubernetes"}, t["name"]
        assert t.get("survey"), f"{t['name']} has no survey"


def test_playbooks_that_require_a_limit_ask_for_it():
    for t in TEMPLATES:
        if "ansible_limit" in (REPO_ROOT / t["playbook"]).read_text():
            assert t.get("ask_limit_on_launch") is True, t["name"]


def test_kubernetes_credential_only_for_playbooks_on_the_controller():
    # tenants.yml and apps.yml talk to the API server only; every other playbook reaches the hosts over SSH.
    for t in TEMPLATES:
        plays = load_yaml(REPO_ROOT / t["playbook"])
        on_controller = all(p.get("hosts") == "localhost" for p in plays)
        assert ("kubernetes" in t["credentials"]) == on_controller, t["name"]
        assert ("machine" in t["credentials"]) == (not on_controller and t["name"] != "registry_import"), t["name"]


@pytest.mark.parametrize(("template", "question"), survey_cases())
def test_survey_question_is_a_documented_argument(template, question):
    for key in ("variable", "question_name", "question_description", "type", "required"):
        assert key in question, f"{template['name']}: question without {key}: {question}"
    variable, qtype = question["variable"], question["type"]
    assert qtype in SURVEY_TYPES, qtype
    options = options_for(template["playbook"])
    assert variable in options, (
        f"{template['name']}: {variable} is not an argument of any role or entry point {template['playbook']} runs "
        f"(nor of cluster_defaults' variables or playbook_{Path(template['playbook']).stem})"
    )
    where, spec = options[variable]
    stype, choices = spec.get("type", "str"), question.get("choices")
    what = f"{template['name']}: {variable} ({stype} in {where}) as a {qtype} question"
    if spec.get("no_log"):
        assert qtype == "password", f"{what}: a secret is asked as a password"
    else:
        assert qtype != "password", f"{what}: only no_log options are passwords"
    if stype == "bool":
        assert qtype == "multiplechoice", what
        assert sorted(choices) == ["false", "true"], what
    elif stype == "int":
        assert qtype == "integer", what
    elif stype == "float":
        assert qtype in ("float", "integer"), what
    elif stype in ("str", "path", "raw"):
        if spec.get("choices"):
            assert qtype == "multiplechoice", what
            assert set(choices) <= set(spec["choices"]), f"{what}: {choices} not within {spec['choices']}"
        else:
            assert qtype in ("text", "textarea", "password"), what
    elif stype == "list" and spec.get("choices"):
        assert qtype == "multiselect", what
        assert set(choices) <= set(spec["choices"]), f"{what}: {choices} not within {spec['choices']}"
    else:
        pytest.fail(f"{what}: a survey cannot give a {stype}")
    if qtype in ("multiplechoice", "multiselect"):
        assert choices and len(set(choices)) == len(choices), what
    else:
        assert choices is None, what
    # A default would always be passed and win over the inventory (docs/awx.md, awx/job_templates.yml).
    assert "default" not in question, f"{what}: no defaults in surveys"
    if spec.get("required"):
        assert question["required"] is True, f"{what}: the playbook requires it"
    if qtype in ("text", "textarea", "password") and variable not in BLANK_IS_UNSET:
        assert question["required"] is True, f"{what}: a blank text answer is passed as '' or null"
    if "min" in question and "max" in question:
        assert question["min"] <= question["max"], what


# ---- bool answers are strings: every use of a bool survey variable reads it through `| bool` ---------------

EXPRESSION_KEYS = {"when", "that", "failed_when", "changed_when", "until"}
JINJA_SPAN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _expressions(data, key=None):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _expressions(v, k)
    elif isinstance(data, list):
        for v in data:
            yield from _expressions(v, key)
    elif isinstance(data, str):
        if key in EXPRESSION_KEYS:
            yield data
        yield from JINJA_SPAN.findall(data)


def _all_expressions():
    for path in sorted([*PLAYBOOKS.rglob("*.yml"), *ROLES.rglob("*.yml"), *ROLES.rglob("*.j2")]):
        if path.name == "argument_specs.yml":
            continue
        if path.suffix == ".j2":
            for expr in JINJA_SPAN.findall(path.read_text()):
                yield path, expr
        else:
            for expr in _expressions(load_yaml(path)):
                yield path, expr


def bool_survey_variables():
    questions = [q for t in TEMPLATES for q in t["survey"]]
    return sorted({q["variable"] for q in questions if sorted(q.get("choices") or []) == ["false", "true"]})


def test_bool_survey_variables_are_read_through_bool():
    expressions = list(_all_expressions())
    problems = []
    for var in bool_survey_variables():
        uses = 0
        for path, expr in expressions:
            for m in re.finditer(rf"\b{var}\b", expr):
                uses += 1
                after = expr[m.end() :]
                if not re.match(r"\s*(\|\s*default\([^()]*\)\s*)?\|\s*bool\b|\s+is\s+(not\s+)?defined\b", after):
                    problems.append(f"{path.relative_to(REPO_ROOT)}: {expr.strip()[:120]}")
        assert uses > 0, f"{var} is never read"
    why = "survey answers are strings ('false' is true): read these through | bool"
    assert not problems, why + "\n" + "\n".join(problems)


# ---- the Kubernetes credential type ------------------------------------------------------------------------


def _kubernetes_core_auth_options():
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

    return set(AUTH_ARG_SPEC)


def _referenced(template: str) -> set[str]:
    env = jinja2.Environment()
    ast = env.parse(template)
    names = set(jinja2.meta.find_undeclared_variables(ast))
    if "tower" in names:
        names.discard("tower")
        names |= {f"tower.filename.{m}" for m in re.findall(r"tower\.filename\.(\w+)", template)}
        if re.search(r"tower\.filename\s*}}", template):
            names.add("tower.filename")
    return names


@pytest.mark.parametrize("ctype", CREDENTIAL_TYPES, ids=lambda c: c["name"])
def test_credential_type_injectors_are_well_formed(ctype):
    assert ctype["kind"] in ("cloud", "net")
    fields = ctype["inputs"]["fields"]
    ids = [f["id"] for f in fields]
    assert len(set(ids)) == len(ids)
    for f in fields:
        assert f["type"] in ("string", "boolean") and f.get("label"), f
    required = set(ctype["inputs"].get("required", []))
    assert required <= set(ids)
    injectors = ctype["injectors"]
    assert set(injectors) <= {"file", "env", "extra_vars"}
    files = set()
    for key, template in injectors.get("file", {}).items():
        assert key == "template" or re.fullmatch(r"template\.\w+", key), key
        files.add(key.partition(".")[2] or "")
        assert _referenced(template) <= set(ids), key
    allowed = set(ids) | {f"tower.filename.{f}" for f in files if f} | ({"tower.filename"} if "" in files else set())
    auth_options = _kubernetes_core_auth_options()
    for key, template in injectors.get("env", {}).items():
        refs = _referenced(template)
        assert refs and refs <= allowed, f"env {key}: {refs}"
        # An env variable is always set; one from an input that may be blank would be set empty.
        assert refs & set(ids) <= required, f"env {key} from an optional input"
        if key.startswith("K8S_AUTH_"):
            assert key[len("K8S_AUTH_") :].lower() in auth_options, f"{key} is not a kubernetes.core connection option"
        else:
            assert key == "KUBECONFIG", key
    assert injectors["env"]["K8S_AUTH_KUBECONFIG"] == "{{ tower.filename.kubeconfig }}"
    assert "kubeconfig" in files
    playbook_vars = {}
    for entry, spec in argument_specs("cluster_defaults").items():
        if entry.startswith("playbook_"):
            playbook_vars.update(spec.get("options", {}))
    for key, template in injectors.get("extra_vars", {}).items():
        assert _referenced(template) <= allowed, key
        assert playbook_vars.get(key, {}).get("type") == "path", f"extra var {key} is not a documented path"
    # Rendered as AWX renders them, with a file path for each file injector.
    inputs = {i: f"<{i}>" for i in ids}
    tower = {"filename": {f: f"/runner/env/{f}" for f in files if f}}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    rendered = {k: env.from_string(v).render(**inputs, tower=tower) for k, v in injectors["env"].items()}
    assert rendered["K8S_AUTH_KUBECONFIG"] == "/runner/env/kubeconfig"
    assert rendered["K8S_AUTH_CONTEXT"] == "<context>"


def test_configure_playbook_loops_over_the_data():
    (play,) = load_yaml(AWX / "configure.yml")
    assert play["vars_files"] == ["job_templates.yml"]
    assert "vars_prompt" not in play
    loops = {next(k for k in t if k.startswith("awx.awx.")): t.get("loop") for t in play["tasks"] if "loop" in t}
    assert loops["awx.awx.job_template"] == "{{ anvil_awx_job_templates }}"
    assert loops["awx.awx.credential_type"] == "{{ anvil_awx_credential_types }}"
    modules = {k for t in play["tasks"] for k in t if k.startswith("awx.awx.")}
    wanted = {"project", "inventory", "inventory_source", "execution_environment", "credential_type", "job_template"}
    assert modules >= {f"awx.awx.{m}" for m in wanted}
