"""The versions manifest (vars/versions.yml) and the pure parts of the artifact/image tooling."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tools import anvil_env, artifacts, images

SHA = "a" * 64


@pytest.fixture(scope="module")
def manifest():
    return artifacts.load_manifest()


def _minimal():
    return {
        "anvil_versions": {
            "etcd": {
                "version": "v3.6.6",
                "source": {"type": "go", "module": "go.etcd.io/etcd/server/v3", "packages": {"etcd": "x/etcd"}},
                "binaries": ["etcd"],
                "image": {"name": "etcd", "tag": "3.6.6-0", "binary": "etcd"},
                "sha256": {},
            }
        },
        "anvil_apt_packages": ["containerd"],
    }


def test_repository_manifest_is_valid(manifest):
    assert artifacts.validate_manifest(manifest) == []


def test_kubernetes_and_kubeadm_image_versions_agree(manifest):
    v = manifest["anvil_versions"]
    assert v["kubernetes"]["version"] == "v1.35.4"
    assert v["kubernetes"]["source"]["staging_version"] == "v0.35.4"
    # kubeadm v1.35.4 expects exactly these (cmd/kubeadm/app/constants).
    assert v["etcd"]["image"]["tag"] == "3.6.6-0"
    assert v["coredns"]["image"]["tag"] == "v1.13.1"
    assert v["pause"]["image"]["tag"] == "3.10.1"
    assert {i["tag"] for i in v["kubernetes"]["images"]} == {"v1.35.4"}


def test_every_required_component_is_listed(manifest):
    v = manifest["anvil_versions"]
    needed = {
        "kubernetes": {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"},
        "etcd": {"etcd", "etcdctl"},
        "coredns": {"coredns"},
        "kwok": {"kwok"},
        "helm": {"helm"},
        "pause": {"pause"},
        "flannel": {"flanneld"},
        "cni-plugins": {"bridge", "host-local", "loopback", "portmap"},
    }
    for comp, binaries in needed.items():
        assert binaries <= set(v[comp]["binaries"]), comp


def test_recorded_sha256_are_well_formed(manifest):
    for name, comp in manifest["anvil_versions"].items():
        for binary, digest in (comp.get("sha256") or {}).items():
            assert binary in comp["binaries"], name
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (name, binary)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.pop("anvil_versions"), "anvil_versions"),
        (lambda m: m["anvil_versions"]["etcd"].update(version=3.6), "version"),
        (lambda m: m["anvil_versions"]["etcd"]["source"].update(type="rpm"), "source.type"),
        (lambda m: m["anvil_versions"]["etcd"]["source"].pop("module"), "source.module"),
        (lambda m: m["anvil_versions"]["etcd"]["source"]["packages"].update(etcdctl="x"), "packages keys"),
        (lambda m: m["anvil_versions"]["etcd"].update(binaries=["etcd", "etcd"]), "duplicate"),
        (lambda m: m["anvil_versions"]["etcd"].update(sha256={"etcd": "abc"}), "hex sha256"),
        (lambda m: m["anvil_versions"]["etcd"].update(sha256={"etcdctl": SHA}), "not one of"),
        (lambda m: m["anvil_versions"]["etcd"]["image"].update(tag=3.6), "quote it"),
        (lambda m: m["anvil_versions"]["etcd"]["image"].update(binary="nope"), "not listed in binaries"),
        (lambda m: m.update(anvil_apt_packages="containerd"), "anvil_apt_packages"),
    ],
)
def test_validation_reports_each_problem(mutate, expected):
    data = _minimal()
    assert artifacts.validate_manifest(data) == []
    mutate(data)
    problems = artifacts.validate_manifest(data)
    assert any(expected in p for p in problems), problems


def test_duplicate_image_names_are_rejected():
    data = _minimal()
    other = copy.deepcopy(data["anvil_versions"]["etcd"])
    data["anvil_versions"]["etcd2"] = other
    assert any("also used by" in p for p in artifacts.validate_manifest(data))


def test_load_manifest_raises_with_all_problems(tmp_path):
    bad = _minimal()
    bad["anvil_versions"]["etcd"]["version"] = ""
    bad["anvil_versions"]["etcd"]["source"]["packages"] = {}
    path = tmp_path / "v.yml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(artifacts.ManifestError) as err:
        artifacts.load_manifest(path)
    assert "version" in str(err.value)
    assert "packages" in str(err.value)


def test_selection_by_component_and_binary(manifest):
    sel = artifacts.parse_selection("etcd,kubernetes/kubectl", manifest)
    assert ("etcd", "etcd") in sel
    assert ("etcd", "etcdctl") in sel
    assert ("kubernetes", "kubectl") in sel
    assert ("kubernetes", "kubelet") not in sel
    with pytest.raises(artifacts.ManifestError, match="unknown component"):
        artifacts.parse_selection("nope", manifest)
    with pytest.raises(artifacts.ManifestError, match="has no binary"):
        artifacts.parse_selection("etcd/kubelet", manifest)
    api = artifacts.parse_selection(",".join(artifacts.API_SELECTION), manifest)
    assert {c for c, _ver in api} == {"etcd", "kubernetes", "kwok"}


def test_binary_path_follows_the_cache_layout(manifest):
    path = artifacts.binary_path("kubernetes", "kube-apiserver", manifest)
    assert path == anvil_env.ANVIL_CACHE / "files/kubernetes/v1.35.4/linux-amd64/kube-apiserver"
    with pytest.raises(KeyError):
        artifacts.binary_path("kubernetes", "etcd", manifest)


def test_go_default_name_skips_major_version_suffix():
    assert artifacts.go_default_name("go.etcd.io/etcd/server/v3") == "server"
    assert artifacts.go_default_name("k8s.io/kubernetes/cmd/kubelet") == "kubelet"


def test_ldflags_substitute_the_version(manifest):
    flags = artifacts.render_ldflags(manifest["anvil_versions"]["kubernetes"]["source"], "v1.35.4")
    assert flags.startswith("-s -w ")
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "{version}" not in flags


def test_sha256_update_keeps_comments_and_other_components(tmp_path):
    src = anvil_env.VERSIONS_FILE.read_text()
    path = tmp_path / "versions.yml"
    path.write_text(src)
    rows = [{"component": "pause", "binary": "pause", "sha256": SHA}]
    changed = artifacts.update_manifest_sha256(path, rows)
    text = path.read_text()
    data = yaml.safe_load(text)
    assert data["anvil_versions"]["pause"]["sha256"] == {"pause": SHA}
    assert text.count("\n#") == src.count("\n#")  # comments survive
    before = yaml.safe_load(src)["anvil_versions"]
    for name in before:
        if name != "pause":
            assert data["anvil_versions"][name] == before[name]
    assert changed == (0 if before["pause"].get("sha256", {}).get("pause") == SHA else 1)
    assert artifacts.update_manifest_sha256(path, rows) == 0  # second run: nothing to change


def test_image_plan_matches_kubeadm_naming(manifest):
    specs = {s["name"]: s for s in images.plan_images(manifest)}
    assert set(specs) >= {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "coredns",
        "pause",
        "flannel",
    }
    assert specs["kube-apiserver"]["entrypoint"] == "/usr/local/bin/kube-apiserver"
    assert specs["etcd"]["tag"] == "3.6.6-0"
    assert specs["pause"]["entrypoint"] == "/pause"
    assert specs["kube-proxy"]["userland"] == ["netfilter"]
    assert specs["flannel"]["files"]["/flannel"] == "flannel-cni-plugin/flannel"
    labels = specs["etcd"]["labels"]
    assert labels["io.anvil.source.module"] == "go.etcd.io/etcd/server/v3"
    assert labels["io.anvil.source.version"] == "v3.6.6"
    for spec in specs.values():
        for group in spec["userland"]:
            assert group in manifest["anvil_image_userland"]


def test_mirror_listens_on_each_address_never_on_all(monkeypatch, tmp_path):
    from tools import mirror

    monkeypatch.setattr(mirror, "STATE", tmp_path)
    svcs = mirror.services(["127.0.0.1", "198.18.0.1"])
    assert sorted(svcs) == ["http-127.0.0.1", "http-198.18.0.1", "registry-127.0.0.1", "registry-198.18.0.1"]
    http = svcs["http-198.18.0.1"]["cmd"]
    assert http[http.index("--bind") + 1] == "198.18.0.1"
    config = yaml.safe_load(mirror.registry_config("198.18.0.1", 5000).read_text())
    assert config["http"]["addr"] == "198.18.0.1:5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(mirror.REGISTRY_ROOT)
    assert all("0.0.0.0" not in " ".join(s["cmd"]) for s in svcs.values())


def test_apt_repo_key_depends_on_the_set_of_packages_only():
    from tools import mirror

    assert mirror.apt_repo_key(["b", "a", "a"]) == mirror.apt_repo_key(["a", "b"])
    assert mirror.apt_repo_key(["a"]) != mirror.apt_repo_key(["a", "b"])


def test_go_proxy_never_falls_back_to_direct_vcs_fetches():
    assert artifacts.module_proxy("https://proxy.golang.org,direct") == "https://proxy.golang.org"
    assert artifacts.module_proxy("https://a.example|https://b.example,off") == "https://a.example,https://b.example"
    assert artifacts.module_proxy("direct") == "https://proxy.golang.org"
    assert artifacts.go_env()["GOPROXY"].split(",")[-1] not in ("direct", "off")


def test_inherited_replaces_keep_versions_and_drop_local_paths():
    gomod = """module example.com/m

replace (
\texample.com/api => ./api
\tk8s.io/api => k8s.io/api v0.33.5 // tested with
\tgopkg.in/x.v2 v2.1.0 => gopkg.in/x.v2 v2.0.0
)

replace example.com/one => example.com/fork v1.2.3
"""
    assert artifacts.module_version_replaces(gomod) == [
        ("k8s.io/api", "k8s.io/api", "v0.33.5"),
        ("gopkg.in/x.v2", "gopkg.in/x.v2", "v2.0.0"),
        ("example.com/one", "example.com/fork", "v1.2.3"),
    ]


def test_checksum_database_is_skipped_only_for_named_modules_with_pinned_hashes(manifest):
    calico = manifest["anvil_versions"]["calico"]["source"]
    assert calico["nosumdb"] == ["github.com/projectcalico"]
    assert artifacts.pinned_sums(calico).splitlines()[0].startswith("github.com/projectcalico/api v0.0.0-")
    bad = copy.deepcopy(calico)
    bad["sums"]["golang.org/x/net v0.1.0"] = "h1:" + "A" * 43 + "="
    bad["nosumdb"].append("github.com/other")
    bad["sums"]["github.com/projectcalico/api v0.0.0-x"] = "sha256:abc"
    problems = artifacts._validate_sums("calico", bad)
    assert any("golang.org/x/net is not under source.nosumdb" in p for p in problems)
    assert any("github.com/other skips the checksum database with no hash pinned" in p for p in problems)
    assert any("want 'module version' -> 'h1:<base64 sha256>'" in p for p in problems)
    assert artifacts._validate_sums("calico", calico) == []


def test_pseudo_version_builds_keep_the_release_version_for_paths_and_tags(manifest):
    calico = manifest["anvil_versions"]["calico"]
    assert artifacts.module_version(calico).startswith("v0.0.0-20251021213802-")
    assert artifacts.binary_path("calico", "calico-node", manifest).parts[-3] == "v3.31.0"
    assert {i["tag"] for i in artifacts.component_images(calico)} == {"v3.31.0"}
    assert artifacts.module_version(manifest["anvil_versions"]["etcd"]) == "v3.6.6"
