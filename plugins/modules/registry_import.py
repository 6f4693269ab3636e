#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: registry_import
short_description: Copy images into a registry with skopeo, only those it does not have yet
version_added: 0.2.0
description:
  - Copies each image of O(images) from a source (the mirror's registry, or an offline bundle directory of OCI
    layouts) into O(repository) with C(skopeo copy), keeping its digests.
  - An image is copied only when the destination has no manifest under its tag or another one than the source
    (the raw manifests' digests are compared first), so a second run copies nothing and reports no change.
  - The destination is reached over TLS verified against O(ca_file); its credentials go to skopeo in a
    temporary auth file (mode 0600, removed afterwards), never on a command line or in the result.
  - Runs where skopeo is and the source and the registry are reachable (the playbook
    C(anvil.cluster.registry_import) runs it on the controller).
author:
  - anvil.cluster maintainers (@anvil-cluster)
options:
  images:
    description: The images to copy, each C({name, tag}) (the filter P(anvil.cluster.manifest_images#filter)
      lists those of the versions manifest).
    type: list
    elements: dict
    required: true
  source:
    description:
      - skopeo reference of each source image, with C({name}) and C({tag}) replaced, for example
        C(docker://198.18.0.1:5000/anvil/{name}:{tag}) (a registry) or C(oci:/srv/anvil-bundle/{name}:{tag}) (a
        directory of OCI layouts).
    type: str
    required: true
  source_tls_verify:
    description: Verify the TLS certificate of a C(docker://) source (false only for a plain-HTTP mirror).
    type: bool
    default: true
  repository:
    description: Destination repository, C(host:port/path), for example C(registry.dc1:5443/anvil).
    type: str
    required: true
  ca_file:
    description: PEM CA of the destination registry's certificate (verification is always on).
    type: path
    required: true
  username:
    description: User of the destination registry.
    type: str
    required: true
  password:
    description: Its password.
    type: str
    required: true
  skopeo:
    description: The skopeo program.
    type: path
    default: skopeo
  timeout:
    description: Seconds one skopeo command may take.
    type: int
    default: 600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Inspects both sides and reports what would be copied; copies nothing.
  diff_mode:
    support: full
    details: The images missing or different in the destination before, and after.
  platform:
    platforms: posix
requirements:
  - skopeo (Debian package C(skopeo))
"""

EXAMPLES = r"""
- name: Copy every image of the versions manifest from the mirror into the private registry
  anvil.cluster.registry_import:
    images: "{{ anvil_versions | anvil.cluster.manifest_images }}"
    source: docker://198.18.0.1:5000/anvil/{name}:{tag}
    source_tls_verify: false
    repository: registry.dc1.example:5443/anvil
    ca_file: ~/.anvil/registry/ca.crt
    username: importer
    password: "{{ vault_registry_importer_password }}"
  delegate_to: localhost
"""

RETURN = r"""
copied:
  description: The images copied (or, in check mode, that would be), as C(name:tag).
  returned: always
  type: list
  elements: str
present:
  description: The images the registry already had with the same manifest.
  returned: always
  type: list
  elements: str
repository:
  description: The destination repository.
  returned: always
  type: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.anvil.cluster.plugins.module_utils import registry_images as ri


class Skopeo(object):
    def __init__(self, module, workdir):
        self.module = module
        self.binary = module.get_bin_path(module.params["skopeo"], required=True)
        self.authfile = os.path.join(workdir, "auth.json")
        self.certs = os.path.join(workdir, "certs")
        os.mkdir(self.certs, 0o700)
        shutil.copyfile(module.params["ca_file"], os.path.join(self.certs, "ca.crt"))
        fd = os.open(self.authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                ri.auth_file(
                    ri.registry_host(module.params["repository"]), module.params["username"], module.params["password"]
                )
            )

    def _run(self, args):
        cmd = [self.binary, "--command-timeout", "%ds" % self.module.params["timeout"], *args]
        return self.module.run_command(cmd)

    def source_digest(self, ref):
        args = ["inspect", "--raw"]
        if ref.startswith("docker://"):
            args.append("--tls-verify=%s" % str(self.module.params["source_tls_verify"]).lower())
        rc, out, err = self._run([*args, ref])
        if rc != 0:
            self.module.fail_json(
                msg="cannot read source image %s: %s; check the source template and that the mirror or bundle has it"
                % (ref, err.strip())
            )
        return ri.manifest_digest(out)

    def destination_digest(self, ref):
        rc, out, err = self._run(["inspect", "--raw", "--authfile", self.authfile, "--cert-dir", self.certs, ref])
        if rc == 0:
            return ri.manifest_digest(out)
        text = err.lower()
        if "manifest unknown" in text or "not found" in text or "name unknown" in text:
            return None
        self.module.fail_json(
            msg="cannot read %s in the destination registry: %s; check the repository, ca_file, username and password"
            % (ref, err.strip())
        )

    def copy(self, src, dest):
        args = [
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-authfile",
            self.authfile,
            "--dest-cert-dir",
            self.certs,
        ]
        if src.startswith("docker://"):
            args.append("--src-tls-verify=%s" % str(self.module.params["source_tls_verify"]).lower())
        rc, _out, err = self._run([*args, src, dest])
        if rc != 0:
            self.module.fail_json(msg="copying %s to %s failed: %s" % (src, dest, err.strip()))


def main():
    module = AnsibleModule(
        argument_spec={
            "images": {"type": "list", "elements": "dict", "required": True},
            "source": {"type": "str", "required": True},
            "source_tls_verify": {"type": "bool", "default": True},
            "repository": {"type": "str", "required": True},
            "ca_file": {"type": "path", "required": True},
            "username": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "skopeo": {"type": "path", "default": "skopeo"},
            "timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = ri.check_images(params["images"])
    if "{name}" not in params["source"] or "{tag}" not in params["source"]:
        problems.append("source must contain {name} and {tag}, e.g. docker://mirror:5000/anvil/{name}:{tag}")
    if not os.path.isfile(params["ca_file"]):
        problems.append("ca_file %s does not exist" % params["ca_file"])
    if "/" not in params["repository"].strip("/"):
        problems.append("repository must be host:port/path, e.g. registry.dc1:5443/anvil")
    if problems:
        module.fail_json(msg="; ".join(problems))

    images = [{"name": i["name"], "tag": str(i["tag"])} for i in params["images"]]
    workdir = tempfile.mkdtemp(prefix="anvil-import-", dir=module.tmpdir)
    try:
        skopeo = Skopeo(module, workdir)
        refs = {"%s:%s" % (i["name"], i["tag"]): i for i in images}
        source = {ref: skopeo.source_digest(ri.source_ref(params["source"], i)) for ref, i in refs.items()}
        dest = {ref: skopeo.destination_digest(ri.destination_ref(params["repository"], i)) for ref, i in refs.items()}
        todo = ri.plan(images, source, dest)
        if not module.check_mode:
            for ref in todo["copy"]:
                skopeo.copy(
                    ri.source_ref(params["source"], refs[ref]), ri.destination_ref(params["repository"], refs[ref])
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "changed": bool(todo["copy"]),
        "copied": todo["copy"],
        "present": todo["present"],
        "repository": params["repository"],
    }
    if module._diff:
        result["diff"] = {
            "before": "".join("%s missing or different\n" % ref for ref in todo["copy"]),
            "after": "".join("%s present\n" % ref for ref in todo["copy"]),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
