# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare paths on a host with their wanted state (type, mode, owner, group, sha256), read-only.

Roles install many files and directories whose state rarely changes. One task per item costs one
round trip (and one Python start on the host) each, also on a re-run where nothing differs. The
host_state module reads them all in one pass; the roles then run their ordinary file/get_url
tasks only for the items reported here. (ansible.builtin.stat takes one path per call.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import hashlib
import os
import pwd
import stat as stat_mod

KINDS = ("file", "directory")


def normalize_mode(mode):
    """'0755', '755', 0o755 or None -> '0755' / None. Raises ValueError for anything else."""
    if mode is None:
        return None
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if not text or any(c not in "01234567" for c in text) or len(text) > 4:
            raise ValueError("mode %r is not an octal mode like '0755'" % (mode,))
        value = int(text, 8)
    if value > 0o7777:
        raise ValueError("mode %r is out of range" % (mode,))
    return "%04o" % value


def validate(items):
    """Check the wanted states; return a list of error strings (empty when fine)."""
    errors = []
    seen = set()
    for index, item in enumerate(items):
        where = "paths[%d]" % index
        path = item.get("path")
        if not path or not str(path).startswith("/"):
            errors.append("%s: path must be absolute, got %r" % (where, path))
            continue
        if path in seen:
            errors.append("%s: %s is listed twice" % (where, path))
        seen.add(path)
        kind = item.get("state", "file")
        if kind not in KINDS:
            errors.append("%s: state must be one of %s, got %r" % (where, ", ".join(KINDS), kind))
        if item.get("sha256") and kind != "file":
            errors.append("%s: sha256 is only for files" % where)
        sha = item.get("sha256")
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
            errors.append("%s: sha256 must be 64 hex digits" % where)
        try:
            normalize_mode(item.get("mode"))
        except ValueError as exc:
            errors.append("%s: %s" % (where, exc))
    return errors


def compare(item, observed):
    """Reasons why a path differs from its wanted state ([] when it matches).

    observed: None when the path does not exist, else a dict with kind ('file', 'directory' or
    'other'), mode ('0755'), owner, group and (for files, when a checksum was wanted) sha256.
    """
    kind = item.get("state", "file")
    if observed is None:
        return ["missing"]
    reasons = []
    if observed["kind"] != kind:
        return ["is a %s, not a %s" % (observed["kind"], kind)]
    mode = normalize_mode(item.get("mode"))
    if mode and observed.get("mode") != mode:
        reasons.append("mode %s, wanted %s" % (observed.get("mode"), mode))
    for key in ("owner", "group"):
        if item.get(key) and observed.get(key) != item[key]:
            reasons.append("%s %s, wanted %s" % (key, observed.get(key), item[key]))
    if item.get("sha256") and observed.get("sha256") != item["sha256"].lower():
        reasons.append("sha256 differs")
    return reasons


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def observe(item, chunk=1 << 20):
    """What the host holds at item['path'] (see compare)."""
    try:
        st = os.lstat(item["path"])
    except OSError:
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat_mod.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    observed = {
        "kind": kind,
        "mode": "%04o" % stat_mod.S_IMODE(st.st_mode),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
    }
    if kind == "file" and item.get("sha256"):
        digest = hashlib.sha256()
        with open(item["path"], "rb") as handle:
            for block in iter(lambda: handle.read(chunk), b""):
                digest.update(block)
        observed["sha256"] = digest.hexdigest()
    return observed


def check_paths(items, observe_fn=observe):
    """{'mismatched': [paths], 'reasons': {path: [reason, ...]}} for the wanted states in items."""
    reasons = {}
    for item in items:
        found = compare(item, observe_fn(item))
        if found:
            reasons[item["path"]] = found
    return {"mismatched": [i["path"] for i in items if i["path"] in reasons], "reasons": reasons}


# ---- what the host_state role changes after the pass (pure; used through the host_state_plan filter) ----

RUNNING = ("active", "activating", "reloading")
NO_CHANGE = (None, "", "none")


def plan(result, files, services):
    """What the apply step of the host_state role changes, from the module's result.

    files: the role's host_state_files ({want: {path, ...}, apply: template|copy|get_url|directory|none, ...});
    services: host_state_services ({name, state: started|stopped, enabled: bool}). Returns
    {'files': [items that differ and that the role changes], 'services': [services whose active or
    unit-file state differs], 'restartable': [services to restart or reload when their files change],
    'differs': bool}.
    """
    mismatched = set(result.get("mismatched") or [])
    todo = [f for f in files if f["want"]["path"] in mismatched and f.get("apply") not in NO_CHANGE]
    observed = result.get("services") or {}
    services_todo = []
    for service in services:
        seen = observed.get(service["name"]) or {}
        state, enabled = service.get("state"), service.get("enabled")
        if (
            (state == "started" and seen.get("active") != "active")
            or (state == "stopped" and seen.get("active") in RUNNING)
            or (enabled is True and seen.get("unit_file") != "enabled")
            or (enabled is False and seen.get("unit_file") == "enabled")
        ):
            services_todo.append(service)
    # Restarted or reloaded when one of their files changed: services that run (as the pass saw them),
    # and services that are wanted running (a package installed by this pass may have started one with
    # its default configuration; restarting or reloading starts a service that is not running). A service
    # that is neither (a kubelet that has not joined yet) is left alone.
    wanted_running = [s["name"] for s in services if s.get("state") == "started"]
    running = [name for name, seen in observed.items() if (seen or {}).get("active") in RUNNING]
    wanted_stopped = [s["name"] for s in services if s.get("state") == "stopped"]
    restartable = [name for name in running if name not in wanted_stopped]
    restartable += [name for name in wanted_running if name not in restartable]
    differs = bool(todo or result.get("packages_missing") or result.get("sysctls_differing") or services_todo)
    return {"files": todo, "services": services_todo, "restartable": restartable, "differs": differs}


def restarts(changed, restartable):
    """[{name, state: restarted|reloaded}] for the restartable services (see plan) named by the changed
    items' restart and reload lists (a service both restarted and reloaded is restarted), in first-named
    order."""
    wanted = {}
    for item in changed:
        for key, state in (("restart", "restarted"), ("reload", "reloaded")):
            for name in item.get(key) or []:
                if name in restartable and wanted.get(name) != "restarted":
                    wanted[name] = state
    return [{"name": name, "state": state} for name, state in wanted.items()]
