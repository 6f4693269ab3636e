"""The image import's pure logic: the manifest's images, references, and what must be copied."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from ansible_collections.anvil.cluster.plugins.module_utils import registry_images as ri

VERSIONS = yaml.safe_load((Path(__file__).resolve().parents[2] / "vars" / "versions.yml").read_text())["anvil_versions"]


def test_manifest_images_lists_image_and_images_once_sorted():
    versions = {
        "a": {"images": [{"name": "b-img", "tag": "v1"}, {"name": "a-img", "tag": "v2"}]},
        "c": {"image": {"name": "a-img", "tag": "v2", "binary": "x"}},
        "d": {"binaries": ["tool"]},
        "e": {"image": {"name": "pause", "tag": 3.1}},
    }
    assert ri.manifest_images(versions) == [
        {"name": "a-img", "tag": "v2"},
        {"name": "b-img", "tag": "v1"},
        {"name": "pause", "tag": "3.1"},
    ]


def test_the_real_manifest_lists_what_a_cluster_pulls():
    names = {i["name"] for i in ri.manifest_images(VERSIONS)}
    assert {"kube-apiserver", "kube-proxy", "etcd", "coredns", "pause", "flannel", "calico-node"} <= names


def test_check_images_names_each_problem():
    problems = ri.check_images([{"name": "a", "tag": "1"}, {"name": "a", "tag": "1"}, {"name": "b"}])
    assert problems == ["images[1] a:1 is listed twice", "images[2] needs both name and tag"]


def test_references():
    image = {"name": "coredns", "tag": "v1.13.1"}
    assert ri.source_ref("docker://m:5000/anvil/{name}:{tag}", image) == "docker://m:5000/anvil/coredns:v1.13.1"
    assert ri.source_ref("oci:/srv/b/{name}:{tag}", image) == "oci:/srv/b/coredns:v1.13.1"
    assert ri.destination_ref("reg:5443/anvil/", image) == "docker://reg:5443/anvil/coredns:v1.13.1"
    assert ri.registry_host("reg:5443/anvil/sub") == "reg:5443"


def test_plan_copies_missing_and_different_keeps_identical():
    images = [{"name": n, "tag": "1"} for n in ("same", "missing", "other")]
    source = {"same:1": "sha256:a", "missing:1": "sha256:b", "other:1": "sha256:c"}
    dest = {"same:1": "sha256:a", "missing:1": None, "other:1": "sha256:d"}
    assert ri.plan(images, source, dest) == {"copy": ["missing:1", "other:1"], "present": ["same:1"]}


def test_manifest_digest_is_sha256_of_the_bytes():
    assert ri.manifest_digest("{}") == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_auth_file_holds_base64_user_and_password():
    data = json.loads(ri.auth_file("reg:5443", "importer", "s3cr:t"))
    assert base64.b64decode(data["auths"]["reg:5443"]["auth"]).decode() == "importer:s3cr:t"
