"""The Kubernetes releases of the versions manifest: what each deploys, how the builders and roles read them."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.filter.kubernetes_releases import FilterModule
from ansible_collections.anvil.cluster.plugins.module_utils import kubernetes_releases as kr

from tools import anvil_env, artifacts, images

SHA = "b" * 64


@pytest.fixture(scope="module")
def manifest():
    return artifacts.load_manifest()


@pytest.fixture()
def versions(manifest):
    return copy.deepcopy(manifest["anvil_versions"])


def test_the_manifest_holds_two_releases_newest_first_and_the_default_is_the_newest(versions):
    assert kr.kubernetes_versions(versions) == ["v1.35.4", "v1.34.12"]
    assert kr.kubernetes_versions(versions)[0] == versions["kubernetes"]["version"]


def test_each_release_deploys_the_etcd_coredns_and_pause_its_kubeadm_expects(versions):
    # cmd/kubeadm/app/constants of each module: DefaultEtcdVersion, CoreDNSVersion, PauseVersion.
    expected = {"v1.35.4": ("3.6.6-0", "v1.13.1", "3.10.1"), "v1.34.12": ("3.6.5-0", "v1.12.1", "3.10.1")}
    for version, (etcd, coredns, pause) in expected.items():
        release = kr.kubernetes_release(versions, version)
        assert sorted(release) == ["coredns", "etcd", "kubernetes", "pause"]
        assert release["kubernetes"]["version"] == version
        assert (
            release["etcd"]["image"]["tag"],
            release["coredns"]["image"]["tag"],
            release["pause"]["image"]["tag"],
        ) == (
            etcd,
            coredns,
            pause,
        )
        assert {i["tag"] for i in release["kubernetes"]["images"]} == {version}
        minor = version.split(".")[1]
        assert release["kubernetes"]["source"]["staging_version"] == f"v0.{minor}.{version.split('.')[2]}"
        assert set(re.findall(r"gitMinor=(\d+)", release["kubernetes"]["source"]["ldflags"])) == {minor}
        assert release["kubernetes"]["upstream_url"].startswith(f"https://dl.k8s.io/release/{version}/")


def test_the_newest_release_is_the_manifest_entries_themselves(versions):
    release = kr.kubernetes_release(versions)
    for name, entry in release.items():
        assert entry == {k: v for k, v in versions[name].items() if k != "releases"}, name


def test_an_older_release_keeps_its_own_checksums_and_inherits_what_it_does_not_name(versions):
    older = kr.component_at(versions, "kubernetes", "v1.34.12")
    default = versions["kubernetes"]
    assert older["sha256"] != default["sha256"]  # never the default's digests for other binaries
    assert older["binaries"] == default["binaries"]
    assert older["source"]["packages"] == default["source"]["packages"]
    assert older["source"]["module"] == "k8s.io/kubernetes"
    assert "releases" not in older
    etcd = kr.component_at(versions, "etcd", "v3.6.5")
    assert etcd["source"]["requires"] == {
        "go.etcd.io/etcd/etcdctl/v3": "v3.6.5",
        "go.etcd.io/etcd/etcdutl/v3": "v3.6.5",
    }
    assert etcd["source"]["module"] == versions["etcd"]["source"]["module"]


def test_a_version_the_manifest_does_not_hold_is_named_with_those_it_holds(versions):
    with pytest.raises(
        kr.ReleaseError, match=r"kubernetes v1\.33\.0 is not in the versions manifest.*v1\.35\.4, v1\.34\.12"
    ):
        kr.kubernetes_release(versions, "v1.33.0")
    versions["kubernetes"]["releases"]["v1.34.12"]["expects"]["etcd"] = "v3.5.24"
    with pytest.raises(kr.ReleaseError, match=r"Kubernetes v1\.34\.12 expects etcd v3\.5\.24 is not in"):
        kr.kubernetes_release(versions, "v1.34.12")


def test_the_filters_fail_with_the_message_and_default_to_the_newest(versions):
    filters = FilterModule().filters()
    assert filters["kubernetes_versions"](versions) == ["v1.35.4", "v1.34.12"]
    assert filters["kubernetes_release"](versions, "")["kubernetes"]["version"] == "v1.35.4"
    assert filters["kubernetes_release"](versions, "v1.34.12")["etcd"]["version"] == "v3.6.5"
    with pytest.raises(AnsibleFilterError, match=r"v1\.36\.0 is not in the versions manifest"):
        filters["kubernetes_release"](versions, "v1.36.0")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda v: v["etcd"]["releases"].update({"v3.7.0": {"sha256": {}}}), "not older than the default v3.6.6"),
        (
            lambda v: v["kubernetes"]["releases"]["v1.34.12"]["expects"].update(coredns="v1.11.3"),
            "expects coredns v1.11.3",
        ),
        (lambda v: v["kubernetes"]["releases"]["v1.34.12"].pop("sha256"), "needs a sha256 of its own"),
        (lambda v: v["kubernetes"]["releases"]["v1.34.12"].update(version="v1.34.12"), "names its version as its key"),
        (lambda v: v["kubernetes"].pop("expects"), "Kubernetes v1.35.4: `expects`"),
        (lambda v: v["coredns"].update(releases={}), "non-empty mapping"),
    ],
)
def test_release_problems_are_named(versions, mutate, expected):
    assert kr.release_problems(versions) == []
    mutate(versions)
    problems = kr.release_problems(versions)
    assert any(expected in p for p in problems), problems
    assert any(expected in p for p in artifacts.validate_manifest({"anvil_versions": versions})), expected


def test_a_release_is_validated_like_a_component(manifest):
    data = copy.deepcopy(manifest)
    data["anvil_versions"]["kubernetes"]["releases"]["v1.34.12"]["sha256"] = {"etcd": SHA}
    data["anvil_versions"]["coredns"]["releases"]["v1.12.1"]["image"]["tag"] = "v1.13.1"
    problems = artifacts.validate_manifest(data)
    assert any("kubernetes.releases.v1.34.12.sha256.etcd: not one of" in p for p in problems), problems
    assert any("coredns.releases.v1.12.1: image coredns:v1.13.1 is also the default's" in p for p in problems), problems


def test_make_artifacts_builds_the_default_release_only_and_the_upgrade_build_adds_the_older_one(manifest):
    default = artifacts.build_targets(manifest)
    assert {(n, e["version"]) for n, e, _binaries in default if n in ("kubernetes", "etcd", "coredns", "pause")} == {
        ("kubernetes", "v1.35.4"),
        ("etcd", "v3.6.6"),
        ("coredns", "v1.13.1"),
        ("pause", "3.10.1"),
    }
    upgrade = artifacts.build_targets(manifest, None, artifacts.kubernetes_release_list("all", manifest))
    added = [(n, e["version"], b) for n, e, b in upgrade[len(default) :]]
    assert upgrade[: len(default)] == default
    assert [(n, v) for n, v, _binaries in added] == [
        ("kubernetes", "v1.34.12"),
        ("coredns", "v1.12.1"),
        ("etcd", "v3.6.5"),
    ]
    assert added[0][2] == manifest["anvil_versions"]["kubernetes"]["binaries"]
    assert added[2][2] == ["etcd", "etcdctl", "etcdutl"]
    with pytest.raises(artifacts.ManifestError, match=r"v1\.30\.0 not in the versions manifest"):
        artifacts.kubernetes_release_list("v1.34.12,v1.30.0", manifest)


def test_cache_keys_of_the_default_release_do_not_change_and_the_older_release_has_its_own(manifest):
    versions = manifest["anvil_versions"]
    stripped = {k: v for k, v in versions["kubernetes"].items() if k not in ("releases", "expects")}
    for binary in versions["kubernetes"]["binaries"]:
        assert artifacts.recipe_hash("kubernetes", versions["kubernetes"], binary, "go1.26.8") == artifacts.recipe_hash(
            "kubernetes", stripped, binary, "go1.26.8"
        )
        older = kr.component_at(versions, "kubernetes", "v1.34.12")
        assert artifacts.recipe_hash("kubernetes", older, binary, "go1.26.8") != artifacts.recipe_hash(
            "kubernetes", stripped, binary, "go1.26.8"
        )
    assert (
        artifacts.component_dir("kubernetes", "v1.34.12")
        == anvil_env.ANVIL_CACHE / "files/kubernetes/v1.34.12/linux-amd64"
    )


def test_built_sha256_of_an_older_release_land_in_its_own_block(tmp_path):
    path = tmp_path / "versions.yml"
    src = anvil_env.VERSIONS_FILE.read_text()
    # As before its first build: the release blocks empty.
    empty = re.sub(r"(\n {8}sha256:\n(?: {10}\S+: [0-9a-f]{64}\n)+)", "\n        sha256: {}\n", src)
    path.write_text(empty)
    before = yaml.safe_load(empty)["anvil_versions"]
    assert before["kubernetes"]["releases"]["v1.34.12"]["sha256"] == {}
    rows = [
        {"component": "kubernetes", "version": "v1.34.12", "binary": "kubelet", "sha256": SHA},
        {"component": "etcd", "version": "v3.6.5", "binary": "etcd", "sha256": SHA},
    ]
    assert artifacts.update_manifest_sha256(path, rows) == 2
    text = path.read_text()
    assert "# Kubernetes releases: the `kubernetes` entry is the default" in text  # comments kept
    data = yaml.safe_load(text)["anvil_versions"]
    assert data["kubernetes"]["releases"]["v1.34.12"]["sha256"] == {"kubelet": SHA}
    assert data["etcd"]["releases"]["v3.6.5"]["sha256"] == {"etcd": SHA}
    assert data["kubernetes"]["sha256"] == before["kubernetes"]["sha256"]
    assert data["etcd"]["sha256"] == before["etcd"]["sha256"]
    for name in before:
        if name not in ("kubernetes", "etcd"):
            assert data[name] == before[name], name
    # A second write of the same digests changes nothing; a new one goes into the block, in order of binaries.
    assert artifacts.update_manifest_sha256(path, rows) == 0
    rows.append({"component": "kubernetes", "version": "v1.34.12", "binary": "kube-apiserver", "sha256": "c" * 64})
    assert artifacts.update_manifest_sha256(path, rows) == 1
    sha = yaml.safe_load(path.read_text())["anvil_versions"]["kubernetes"]["releases"]["v1.34.12"]["sha256"]
    assert list(sha) == ["kube-apiserver", "kubelet"]
    assert artifacts.validate_manifest(yaml.safe_load(path.read_text())) == []


def test_the_repository_manifest_records_the_older_release_checksums(manifest):
    for name, version in (("kubernetes", "v1.34.12"), ("etcd", "v3.6.5"), ("coredns", "v1.12.1")):
        entry = kr.component_at(manifest["anvil_versions"], name, version)
        assert sorted(entry["sha256"]) == sorted(entry["binaries"]), (name, version)
        assert not set(entry["sha256"].values()) & set(manifest["anvil_versions"][name]["sha256"].values())


def test_the_image_builder_plans_the_older_release_images_from_its_own_binaries(manifest):
    default = [(s["name"], s["tag"]) for s in images.plan_images(manifest)]
    assert ("kube-apiserver", "v1.34.12") not in default
    plans = images.plan_all_images(manifest, ["v1.34.12"])
    assert [(s["name"], s["tag"]) for s, _source in plans[: len(default)]] == default
    added = {(s["name"], s["tag"]): (s, source) for s, source in plans[len(default) :]}
    assert sorted(added) == [
        ("coredns", "v1.12.1"),
        ("etcd", "3.6.5-0"),
        ("kube-apiserver", "v1.34.12"),
        ("kube-controller-manager", "v1.34.12"),
        ("kube-proxy", "v1.34.12"),
        ("kube-scheduler", "v1.34.12"),
    ]
    spec, source = added[("kube-proxy", "v1.34.12")]
    assert spec["labels"]["io.anvil.source.version"] == "v1.34.12"
    assert spec["userland"] == ["netfilter"]
    assert source["anvil_versions"]["kubernetes"]["version"] == "v1.34.12"
    spec, source = added[("etcd", "3.6.5-0")]
    assert source["anvil_versions"]["etcd"]["version"] == "v3.6.5"
    assert images.layout_dir(spec) == anvil_env.ANVIL_CACHE / "images/etcd/3.6.5-0"
    # The default release's images come out the same as before.
    assert [s for s, _source in plans[: len(default)]] == images.plan_images(manifest)
