# Artifacts, OCI images and the offline mirror (see docs/offline-mirror.md).
# Outputs live under $(ANVIL_CACHE) (outside the repository), keyed by version; re-runs are fast.
.PHONY: artifacts artifacts-upgrade artifacts-api artifacts-helm artifacts-files artifacts-table images mirror-up mirror-down mirror-status

ANVIL_BUILD_JOBS ?= 2
export ANVIL_BUILD_JOBS

artifacts: setup ## build every binary of vars/versions.yml into $ANVIL_CACHE, then the OCI images
	$(BIN)/python tools/artifacts.py build
	$(BIN)/python tools/images.py build

# Older Kubernetes releases (the manifest's `releases`) are for the upgrade tests only: `make test` never builds them.
artifacts-upgrade: setup ## `make artifacts` plus every older Kubernetes release of the manifest, with the etcd/CoreDNS/pause each expects
	$(BIN)/python tools/artifacts.py build --kubernetes-releases all
	$(BIN)/python tools/images.py build --kubernetes-releases all

artifacts-api: setup ## only what a local API server needs (etcd, kube-apiserver/-controller-manager/-scheduler, kubectl, kwok)
	$(BIN)/python tools/artifacts.py build --api

artifacts-helm: setup ## only helm (the app_release integration tests render charts with it)
	$(BIN)/python tools/artifacts.py build --only helm

artifacts-files: setup ## only the files components ship in their Go modules (Calico's manifests), no build
	$(BIN)/python tools/artifacts.py files

artifacts-table: setup ## versions, sizes and sha256 of the cached binaries
	$(BIN)/python tools/artifacts.py table

images: setup ## OCI images (kubeadm naming) from the cached binaries
	$(BIN)/python tools/images.py build

mirror-up: setup ## serve files + apt repo (HTTP :8080) and the OCI registry (:5000) on loopback and the testbed bridge
	$(BIN)/python tools/mirror.py up

mirror-down: ## stop the mirror (leaves no process behind)
	$(BIN)/python tools/mirror.py down

mirror-status: ## show whether the mirror is serving
	$(BIN)/python tools/mirror.py status

# e2e tests install clusters from the mirror: every binary and image must be built (cached) first.
e2e e2e-cluster e2e-ha e2e-registry e2e-awx bench: artifacts
e2e-upgrade: artifacts-upgrade
