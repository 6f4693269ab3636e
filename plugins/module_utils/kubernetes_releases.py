# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes releases of the versions manifest (vars/versions.yml) and what each one deploys.

A component of the manifest (`anvil_versions.<name>`) is its default version; older versions kept for
upgrades are listed under its `releases`, keyed by version, each naming only what differs from the default
(`source` merged one key deep, every other key replaced). The `kubernetes` component and each of its
releases say under `expects` which version of etcd, CoreDNS and pause their kubeadm deploys.

Pure logic (no Ansible imports): the filters of plugins/filter/kubernetes_releases.py call it on the
controller, and the artifact and image builders (tools/) load this same file, so the roles and the builders
agree on what a release is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

KUBERNETES = "kubernetes"


class ReleaseError(ValueError):
    """A version the manifest does not hold, or a manifest whose releases are malformed."""


def version_key(version):
    """Sort key of a version such as v1.35.4 or 3.10.1: its numbers, as integers."""
    return tuple(int(n) for n in re.findall(r"\d+", str(version)))


def component_versions(versions, name):
    """The versions the manifest holds of component `name`, newest first."""
    comp = _component(versions, name)
    held = [str(comp["version"])] + [str(v) for v in (comp.get("releases") or {})]
    return sorted(held, key=version_key, reverse=True)


def kubernetes_versions(versions):
    """The Kubernetes releases of the manifest, newest first."""
    return component_versions(versions, KUBERNETES)


def component_at(versions, name, version):
    """Component `name` as it is at `version`: the default entry, or one of its releases merged over it.

    The result has the shape of a manifest component (version, source, binaries, images, sha256, ...) and no
    `releases` key."""
    comp = _component(versions, name)
    entry = dict((k, v) for k, v in comp.items() if k != "releases")
    if str(version) == str(comp["version"]):
        return entry
    releases = comp.get("releases") or {}
    if str(version) not in [str(v) for v in releases]:
        raise ReleaseError(
            "%s %s is not in the versions manifest (vars/versions.yml holds %s)"
            % (name, version, ", ".join(component_versions(versions, name)))
        )
    release = dict((str(k), v) for k, v in releases.items())[str(version)] or {}
    for key, value in release.items():
        if key == "source":
            merged = dict(comp.get("source") or {})
            merged.update(value or {})
            entry["source"] = merged
        else:
            entry[key] = value
    entry["version"] = str(version)
    return entry


def kubernetes_release(versions, version=None):
    """What Kubernetes `version` (default: the newest) deploys: {kubernetes: entry, <expected>: entry, ...}
    with one entry per component its `expects` names (etcd, coredns, pause), each at the expected version."""
    version = version or kubernetes_versions(versions)[0]
    kubernetes = component_at(versions, KUBERNETES, version)
    release = {KUBERNETES: kubernetes}
    for name, wanted in sorted((kubernetes.get("expects") or {}).items()):
        try:
            release[name] = component_at(versions, name, wanted)
        except ReleaseError as exc:
            raise ReleaseError("Kubernetes %s expects %s" % (version, exc)) from exc
    return release


def release_problems(versions):
    """Problems of the manifest's releases: malformed `releases` maps, a default that is not the newest,
    `expects` naming what the manifest does not hold. Empty when every release is usable."""
    problems = []
    for name, comp in sorted((versions or {}).items()):
        if not isinstance(comp, dict):
            continue
        releases = comp.get("releases")
        if releases is None:
            continue
        where = "anvil_versions.%s.releases" % name
        if not isinstance(releases, dict) or not releases:
            problems.append("%s: a non-empty mapping version -> what differs is required" % where)
            continue
        for version, release in releases.items():
            if not isinstance(version, str):
                problems.append("%s: version %r must be a string (quote it)" % (where, version))
            if not isinstance(release, dict):
                problems.append("%s.%s: must be a mapping" % (where, version))
                continue
            if "version" in release or "releases" in release:
                problems.append(
                    "%s.%s: names its version as its key, and has no releases of its own" % (where, version)
                )
            if comp.get("binaries") and "sha256" not in release:
                problems.append(
                    "%s.%s: needs a sha256 of its own (may be {}): the default's would not match its binaries"
                    % (where, version)
                )
            if version_key(version) >= version_key(comp.get("version")):
                problems.append(
                    "%s.%s: not older than the default %s (the default is the newest; releases are older)"
                    % (where, version, comp.get("version"))
                )
    if isinstance((versions or {}).get(KUBERNETES), dict) and "version" in versions[KUBERNETES]:
        for version in kubernetes_versions(versions):
            try:
                expects = component_at(versions, KUBERNETES, version).get("expects")
                if not isinstance(expects, dict) or not expects:
                    problems.append("Kubernetes %s: `expects` (etcd, coredns, pause versions) is required" % version)
                    continue
                kubernetes_release(versions, version)
            except ReleaseError as exc:
                problems.append(str(exc))
    return problems


def _component(versions, name):
    comp = (versions or {}).get(name)
    if not isinstance(comp, dict) or "version" not in comp:
        raise ReleaseError("the versions manifest has no component %s" % name)
    return comp
