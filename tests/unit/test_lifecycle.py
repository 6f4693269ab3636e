"""Node lifecycle logic: quorum rules, new-host detection, reset planning."""

import subprocess

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import lifecycle as lc


def members(*spec):
    """members(("cp1", True), ("cp2", False)) -> etcd member dicts."""
    return [{"name": n, "id": str(100 + i), "healthy": h} for i, (n, h) in enumerate(spec)]


# --- quorum ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "q", "ft"), [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2), (7, 4, 3)])
def test_quorum_and_fault_tolerance(n, q, ft):
    assert lc.quorum(n) == q
    assert lc.fault_tolerance(n) == ft


def test_quorum_rejects_empty_cluster():
    with pytest.raises(lc.LifecycleError):
        lc.quorum(0)


# --- control-plane removal -------------------------------------------------------------------------------


def test_remove_first_of_three_healthy_control_planes_is_allowed_with_even_count_warning():
    plan = lc.plan_control_plane_removal(
        ["cp1", "cp2", "cp3"], members(("cp1", True), ("cp2", True), ("cp3", True)), ["cp1"]
    )
    assert plan["ok"]
    assert plan["steps"] == [{"node": "cp1", "member_id": "100", "member_name": "cp1", "healthy": True}]
    assert len(plan["warnings"]) == 1
    assert "2 members" in plan["warnings"][0]


def test_refuses_last_control_plane():
    plan = lc.plan_control_plane_removal(["cp1"], members(("cp1", True)), ["cp1"])
    assert not plan["ok"]
    assert "last control plane" in plan["problems"][0]
    assert plan["steps"] == []


def test_refuses_removing_every_control_plane_one_after_the_other():
    plan = lc.plan_control_plane_removal(["cp1", "cp2"], members(("cp1", True), ("cp2", True)), ["cp1", "cp2"])
    assert not plan["ok"]
    assert [s["node"] for s in plan["steps"]] == ["cp1"]
    assert "cp2" in plan["problems"][0] and "last control plane" in plan["problems"][0]


def test_refuses_when_remaining_members_would_lose_quorum():
    # 3 members, cp3 is down: removing healthy cp1 leaves cp2 (healthy) + cp3 (down): 1 of 2 < quorum 2.
    plan = lc.plan_control_plane_removal(
        ["cp1", "cp2", "cp3"], members(("cp1", True), ("cp2", True), ("cp3", False)), ["cp1"]
    )
    assert not plan["ok"]
    msg = plan["problems"][0]
    assert "1 healthy of 2" in msg and "quorum of 2" in msg and "cp3" in msg


def test_removing_the_dead_member_restores_health():
    # The same cluster, but removing the dead cp3 leaves 2 healthy of 2.
    plan = lc.plan_control_plane_removal(
        ["cp1", "cp2", "cp3"], members(("cp1", True), ("cp2", True), ("cp3", False)), ["cp3"]
    )
    assert plan["ok"], plan
    assert plan["steps"][0]["healthy"] is False


def test_refuses_when_cluster_already_lost_quorum():
    plan = lc.plan_control_plane_removal(
        ["cp1", "cp2", "cp3"], members(("cp1", True), ("cp2", False), ("cp3", False)), ["cp3"]
    )
    assert not plan["ok"]
    assert "cannot commit a membership change" in plan["problems"][0]


def test_five_members_two_removals_in_order():
    ms = members(("cp1", True), ("cp2", True), ("cp3", True), ("cp4", True), ("cp5", False))
    plan = lc.plan_control_plane_removal(["cp1", "cp2", "cp3", "cp4", "cp5"], ms, ["cp5", "cp4"])
    assert plan["ok"], plan
    assert [s["node"] for s in plan["steps"]] == ["cp5", "cp4"]
    # 5 -> 4 (even, warned) -> 3 (odd)
    assert len(plan["warnings"]) == 1


def test_second_removal_is_judged_against_the_shrunk_cluster():
    # 4 members, cp4 down. Removing cp1 (healthy): 3 members, 2 healthy >= 2: fine. Then cp2: 2 members,
    # 1 healthy < 2: refused.
    ms = members(("cp1", True), ("cp2", True), ("cp3", True), ("cp4", False))
    plan = lc.plan_control_plane_removal(["cp1", "cp2", "cp3", "cp4"], ms, ["cp1", "cp2"])
    assert not plan["ok"]
    assert [s["node"] for s in plan["steps"]] == ["cp1"]
    assert "cp2" in plan["problems"][0]


def test_learners_do_not_vote():
    ms = [*members(("cp1", True), ("cp2", True)), {"name": "cp3", "id": "9", "healthy": False, "is_learner": True}]
    plan = lc.plan_control_plane_removal(["cp1", "cp2"], ms, ["cp1"])
    assert plan["ok"]  # 2 voters -> 1 voter, quorum 1


def test_node_whose_member_is_already_gone_needs_no_etcd_step():
    plan = lc.plan_control_plane_removal(["cp1", "cp2", "cp3"], members(("cp2", True), ("cp3", True)), ["cp1"])
    assert plan["ok"]
    assert plan["steps"] == []


def test_worker_or_unknown_node_is_ignored():
    plan = lc.plan_control_plane_removal(["cp1"], members(("cp1", True)), ["w1"])
    assert plan == {"ok": True, "problems": [], "warnings": [], "steps": []}


def test_parse_etcd_members_gateway_and_etcdctl_shapes():
    gateway = {"members": [{"ID": "1234567890123", "name": "cp1", "peerURLs": ["https://a:2380"], "clientURLs": []}]}
    etcdctl = {"members": [{"ID": 42, "name": "cp2", "isLearner": True}]}
    assert lc.parse_etcd_members(gateway) == [
        {"id": "1234567890123", "name": "cp1", "peer_urls": ["https://a:2380"], "client_urls": [], "is_learner": False}
    ]
    assert lc.parse_etcd_members(etcdctl)[0]["id"] == "42"
    assert lc.parse_etcd_members(etcdctl)[0]["is_learner"] is True
    assert lc.parse_etcd_members({}) == []


# --- new hosts --------------------------------------------------------------------------------------------


def node(name, ready=True, cp=False):
    labels = {lc.CONTROL_PLANE_LABEL: ""} if cp else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_classify_hosts_new_present_not_ready_and_node_name_mapping():
    nodes = [node("cp1", cp=True), node("w1"), node("worker-2.example", ready=False)]
    result = lc.classify_hosts(["w1", "w2", "w3", "cp1"], {"w2": "worker-2.example"}, nodes)
    assert result == {"new": ["w3"], "present": ["w1", "w2", "cp1"], "not_ready": ["w2"]}


def test_classify_hosts_on_empty_cluster():
    assert lc.classify_hosts(["a"], {}, []) == {"new": ["a"], "present": [], "not_ready": []}


def test_control_plane_nodes_by_label():
    assert lc.control_plane_nodes([node("w1"), node("cp2", cp=True), node("cp1", cp=True)]) == ["cp1", "cp2"]


# --- reset --------------------------------------------------------------------------------------------------

SAVE = """# Generated by iptables-nft-save v1.8.9 on Sun Nov 22 09:00:00 2026
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:FLANNEL-FWD - [0:0]
:OPERATOR-SSH - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -j OPERATOR-SSH
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A OPERATOR-SSH -s 10.0.0.0/8 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-3f1c2a - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -s 10.244.1.0/24 -m comment --comment "name: \\"cbr0\\" id: \\"abc\\"" -j CNI-3f1c2a
-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A POSTROUTING -o eth0 -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A CNI-3f1c2a -d 10.244.1.0/24 -j ACCEPT
COMMIT
"""


def test_parse_iptables_save():
    tables = lc.parse_iptables_save(SAVE)
    assert set(tables) == {"mangle", "filter", "nat"}
    assert tables["filter"]["chains"]["INPUT"] == "DROP"
    assert tables["filter"]["chains"]["KUBE-FIREWALL"] == "-"
    assert ("INPUT", "-j KUBE-FIREWALL") in tables["filter"]["rules"]


def test_parse_iptables_save_rejects_garbage():
    with pytest.raises(lc.LifecycleError):
        lc.parse_iptables_save("-A INPUT -j ACCEPT\n")
    with pytest.raises(lc.LifecycleError):
        lc.parse_iptables_save("*filter\nbogus\nCOMMIT\n")


def test_netfilter_cleanup_touches_only_kubernetes_objects():
    plan = lc.netfilter_cleanup(SAVE)
    script = plan["script"]
    # Operator rules, policies and chains are never named (so never deleted or flushed).
    assert "--dport 22" not in script
    assert "OPERATOR-SSH" not in script
    assert "MASQUERADE" not in script
    assert ":INPUT" not in script and "-F INPUT" not in script and "-F\n" not in script
    # Kubernetes' rules in built-in chains go, then its chains are flushed and deleted.
    assert "-D INPUT -j KUBE-FIREWALL" in script
    assert "-D OUTPUT -j KUBE-FIREWALL" in script
    assert '-D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD' in script
    assert '-D POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN' in script
    assert "-D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in script
    for chain in ("KUBE-FIREWALL", "KUBE-FORWARD", "FLANNEL-FWD", "KUBE-SERVICES", "CNI-3f1c2a", "KUBE-KUBELET-CANARY"):
        assert "-F %s\n" % chain in script and "-X %s\n" % chain in script
    # Every flush precedes every delete in a table (chains reference each other).
    nat = script.split("*nat\n", 1)[1].split("COMMIT", 1)[0]
    assert nat.rindex("-F ") < nat.index("-X ")
    assert any("chain KUBE-SERVICES (1 rules)" in i for i in plan["items"])


def test_netfilter_cleanup_of_clean_host_is_empty():
    clean = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    assert lc.netfilter_cleanup(clean) == {"script": "", "items": []}
    assert lc.netfilter_cleanup("") == {"script": "", "items": []}


def _in_netns(script):
    """Run a shell script in a fresh, empty network namespace (its own netfilter tables)."""
    import shutil

    for tool in ("unshare", "iptables-restore", "iptables-save"):
        if shutil.which(tool) is None:
            pytest.fail("%s is not installed (packages util-linux, iptables): needed for this test" % tool)
    proc = subprocess.run(["unshare", "--net", "sh", "-ec", script], text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_netfilter_cleanup_applied_by_real_iptables_restore_leaves_operator_rules(tmp_path):
    """Load the rules into a private netns, plan from the real iptables-save, apply, compare."""
    (tmp_path / "rules").write_text(SAVE)
    saved = _in_netns("iptables-restore < %s; iptables-save" % (tmp_path / "rules"))
    (tmp_path / "saved").write_text(saved)
    (tmp_path / "cleanup").write_text(lc.netfilter_cleanup(saved)["script"])
    after = _in_netns(
        "iptables-restore < %s; iptables-restore --noflush < %s; iptables-save"
        % (tmp_path / "saved", tmp_path / "cleanup")
    )
    tables = lc.parse_iptables_save(after)
    assert tables["filter"]["chains"]["INPUT"] == "DROP"  # policies untouched
    assert [c for c in tables["filter"]["chains"] if c not in ("INPUT", "FORWARD", "OUTPUT")] == ["OPERATOR-SSH"]
    assert ("INPUT", "-p tcp -m tcp --dport 22 -j ACCEPT") in tables["filter"]["rules"]
    assert ("INPUT", "-j OPERATOR-SSH") in tables["filter"]["rules"]
    assert tables["nat"]["rules"] == [("POSTROUTING", "-o eth0 -j MASQUERADE")]
    assert not any(lc._owned_chain(c) for t in tables.values() for c in t["chains"])
    # A second plan on the cleaned host is empty (reset is idempotent).
    assert lc.netfilter_cleanup(after) == {"script": "", "items": []}


def test_nft_cleanup_picks_only_owned_tables():
    out = "table ip filter\ntable ip kube-proxy\ntable ip6 kube-proxy\ntable inet flannel-ipv4\ntable inet fw\n"
    assert lc.nft_cleanup(out) == ["ip kube-proxy", "ip6 kube-proxy", "inet flannel-ipv4"]


def test_mounts_to_unmount_deepest_first_and_unescaped():
    mounts = "\n".join(
        [
            "/dev/sda1 / ext4 rw 0 0",
            "tmpfs /var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access-x tmpfs rw 0 0",
            "tmpfs /var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/my\\040secret tmpfs rw 0 0",
            "/dev/sdb1 /var/lib/kubelet ext4 rw 0 0",
            "/dev/sdc1 /var/lib/kubeletfoo ext4 rw 0 0",
        ]
    )
    result = lc.mounts_to_unmount(mounts)
    assert result[-1] == "/var/lib/kubelet"
    assert "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/my secret" in result
    assert "/var/lib/kubeletfoo" not in result
    assert len(result) == 3


def test_reset_plan_lists_everything_and_only_owned_things():
    observed = {
        "existing_paths": ["/etc/kubernetes", "/var/lib/kubelet", "/etc/ssh/sshd_config"],
        "iptables_save": SAVE,
        "links": ["lo", "host0", "cni0", "flannel.1", "veth1234"],
        "nft_tables": "table ip filter\ntable ip kube-proxy\n",
        "proc_mounts": "tmpfs /var/lib/kubelet/pods/a/volumes/v tmpfs rw 0 0\n",
        "pods": ["p1", "apiserver"],
        # kubeadm's static pods, stopped after the others (a CNI teardown may need this node's API server).
        "control_plane_pods": ["apiserver", "gone"],
        "containers": ["c1", "c2"],
        "images": ["198.18.0.1:5000/anvil/pause:3.10.1"],
        "kubelet_active": True,
    }
    plan = lc.reset_plan(observed)
    assert not plan["empty"]
    assert plan["paths"] == ["/etc/kubernetes", "/var/lib/kubelet"]
    assert plan["links"] == ["cni0", "flannel.1"]
    assert plan["nft_tables"] == ["ip kube-proxy"]
    assert plan["stop_kubelet"] is True
    assert plan["pods"] == ["p1", "apiserver"] and plan["control_plane_pods"] == ["apiserver"]
    text = "\n".join(plan["items"])
    assert "sshd" not in text and "host0" not in text
    assert "path: /etc/kubernetes" in text and "link: cni0" in text and "pod sandbox: p1" in text


def test_reset_plan_of_clean_host_is_empty():
    plan = lc.reset_plan({"existing_paths": ["/etc/ssh"], "links": ["lo", "host0"], "iptables_save": ""})
    assert plan["empty"]
    assert plan["items"] == []


def test_members_with_health_from_probe_results():
    results = [
        # etcd sends /health as text/plain: the uri module returns the body in `content`, no `json`.
        {"item": {"id": "1", "name": "cp1"}, "status": 200, "content": '{"health":"true","reason":""}'},
        {"item": {"id": "2", "name": "cp2"}, "status": 503, "content": '{"health":"false","reason":"NOSPACE"}'},
        {"item": {"id": "3", "name": "cp3"}, "status": -1, "msg": "Connection refused"},
        {"item": {"id": "4", "name": ""}, "skipped": True},
        {"item": {"id": "5", "name": "cp5"}, "status": 200, "json": {"health": "true"}},
        {"item": {"id": "6", "name": "cp6"}, "status": 200, "content": "not json"},
    ]
    assert [(m["name"], m["healthy"]) for m in lc.members_with_health(results)] == [
        ("cp1", True),
        ("cp2", False),
        ("cp3", False),
        ("", False),
        ("cp5", True),
        ("cp6", False),
    ]


CALICO_SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:cali-INPUT - [0:0]
:cali-FORWARD - [0:0]
:site-guard - [0:0]
-A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT
-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD
-A INPUT -p tcp --dport 22 -j site-guard
-A cali-INPUT -m comment --comment "cali:msRIDfJRWnYwzW4g" -j ACCEPT
COMMIT
"""


def test_reset_of_a_calico_node_removes_its_links_routes_chains_and_tables_only():
    routes = [
        # As `ip -j route show proto 80` prints it: without the protocol it was filtered by.
        {"type": "blackhole", "dst": "10.244.52.0/26", "flags": []},
        {"dst": "10.244.52.7", "dev": "cali1a2b3c4d5e6", "protocol": "80", "scope": "link", "flags": []},
        {"dst": "10.244.7.0/26", "gateway": "10.244.7.0", "dev": "vxlan.calico", "protocol": "80", "flags": ["onlink"]},
        {"dst": "10.9.0.0/16", "gateway": "198.18.0.1", "dev": "host0", "protocol": "static", "flags": []},
    ]
    plan = lc.reset_plan(
        {
            "links": ["lo", "host0", "vxlan.calico", "cali1a2b3c4d5e6", "calicoctl0", "caliXYZ"],
            "routes": routes,
            "iptables_save": CALICO_SAVE,
            "nft_tables": "table ip calico\ntable inet site\n",
        }
    )
    assert plan["links"] == ["vxlan.calico", "cali1a2b3c4d5e6"]
    # Only the blackhole block route: the others go with their devices; the host's own route stays.
    assert plan["routes"] == ["blackhole 10.244.52.0/26 proto 80"]
    assert plan["nft_tables"] == ["ip calico"]
    script = plan["iptables"]["script"]
    assert "-X cali-INPUT" in script and "-X cali-FORWARD" in script
    assert '-D INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT' in script
    assert "site-guard" not in script
    assert "route: blackhole 10.244.52.0/26 proto 80" in plan["items"]
