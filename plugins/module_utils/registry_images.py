# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the image import (module registry_import, filter manifest_images): which images the
versions manifest lists, their source and destination references, and which of them must be copied."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json


def manifest_images(versions):
    """Every image of the versions manifest (anvil_versions), once: [{name, tag}] sorted by name and tag.
    A component lists them under `images` (several) or `image` (one)."""
    seen = {}
    for component in (versions or {}).values():
        if not isinstance(component, dict):
            continue
        images = component.get("images") or ([component["image"]] if component.get("image") else [])
        for image in images:
            key = (str(image["name"]), str(image["tag"]))
            seen[key] = {"name": key[0], "tag": key[1]}
    return [seen[key] for key in sorted(seen)]


def check_images(images):
    """Problems of the images option: each needs a name and a tag, no duplicates."""
    problems = []
    seen = set()
    for index, image in enumerate(images):
        if not image.get("name") or not image.get("tag"):
            problems.append("images[%d] needs both name and tag" % index)
            continue
        key = (image["name"], str(image["tag"]))
        if key in seen:
            problems.append("images[%d] %s:%s is listed twice" % (index, key[0], key[1]))
        seen.add(key)
    return problems


def source_ref(template, image):
    """skopeo reference of the source: the template with {name} and {tag}, e.g.
    docker://mirror:5000/anvil/{name}:{tag} or oci:/srv/bundle/{name}:{tag}."""
    return template.format(name=image["name"], tag=image["tag"])


def destination_ref(repository, image):
    return "docker://%s/%s:%s" % (repository.rstrip("/"), image["name"], image["tag"])


def registry_host(repository):
    """host[:port] of a repository such as registry.example:5443/anvil."""
    return repository.split("/", 1)[0]


def manifest_digest(raw):
    """Digest of a manifest as a registry names it (sha256 of its bytes)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def plan(images, source_digests, destination_digests):
    """Which images to copy: those whose destination has no manifest or another one than the source.
    Returns {'copy': [...], 'present': [...]}, each a list of 'name:tag'."""
    result = {"copy": [], "present": []}
    for image in images:
        ref = "%s:%s" % (image["name"], image["tag"])
        want = source_digests.get(ref)
        have = destination_digests.get(ref)
        result["present" if want is not None and want == have else "copy"].append(ref)
    return result


def auth_file(host, username, password):
    """Content of a containers-auth.json (skopeo --authfile) for one registry."""
    token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
    return json.dumps({"auths": {host: {"auth": token}}})
