# Local Kubernetes API for tests (tools/kube_api/): etcd + kube-apiserver + kube-controller-manager
# + kube-scheduler on 127.0.0.1:16443 with kwok simulating NODES nodes. See docs/testing.md.
NODES ?= 3

.PHONY: kube-api kube-api-down kube-api-status kube-api-env integration-min-client

kube-api: setup ## start (or reuse) the local API server with NODES kwok nodes (default 3)
	@$(BIN)/python -m tools.kube_api check-binaries > /dev/null 2>&1 || $(MAKE) --no-print-directory artifacts-api
	@$(BIN)/python -m tools.kube_api up --nodes $(NODES)

kube-api-down: ## stop the local API server and remove its state
	@$(BIN)/python -m tools.kube_api down

kube-api-status: ## health, pids and memory of the local API server
	@$(BIN)/python -m tools.kube_api status

kube-api-env: ## print `export KUBECONFIG=...` for the local API server
	@$(BIN)/python -m tools.kube_api env

# Integration tests run against the local API server: make sure its binaries are built first, and
# helm, which the app_release tests render a chart with.
ifneq ($(wildcard mk/artifacts.mk),)
integration integration-min-client: artifacts-api artifacts-helm artifacts-files
endif

integration-min-client: setup ## the integration suite with the lowest kubernetes client the modules declare
	bash scripts/integration_min_client.sh
