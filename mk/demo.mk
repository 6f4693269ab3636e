# make demo: a working cluster on local testbed machines from a fresh checkout (scripts/demo.sh).
.PHONY: demo e2e-cluster e2e-ha e2e-registry e2e-upgrade

demo: ## fresh machine -> tools, artifacts, mirror, testbed, site.yml, smoke test, kubectl get nodes, total time
	@NODES=$(or $(NODES),3) CONTROL_PLANES=$(or $(CONTROL_PLANES),1) bash scripts/demo.sh

e2e-cluster: setup ## only the cluster-core e2e tests (1 control plane + 2 workers)
	bash scripts/pytest.sh tests/e2e/test_cluster_core.py -v

e2e-ha: setup ## HA e2e: 3 control planes + 1 worker (lose the first one, API still served); control planes added and removed
	bash scripts/pytest.sh tests/e2e -m ha -v

e2e-registry: setup ## a cluster that runs entirely from the private registry, filled by registry_import.yml
	bash scripts/pytest.sh tests/e2e -m registry_cluster -v

e2e-upgrade: setup ## Kubernetes upgrade e2e on a testbed instance of its own: 1 control plane + 2 workers at the older release
	bash scripts/pytest.sh tests/e2e -m upgrade --durations 10 -v
