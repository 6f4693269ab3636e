# The anvil-ee execution environment (awx/execution-environment.yml, tools/ee.py, docs/awx.md).
EE := $(BIN)/python -m tools.ee

.PHONY: ee-context ee ee-push e2e-awx sanity-ee

ee-context: build ## build/ee: the ansible-builder context of anvil-ee (for podman build / ansible-builder build)
	$(EE) context

ee: build ## build the anvil-ee image without a container engine: OCI layout in $(ANVIL_CACHE)/ee/oci/anvil-ee
	$(EE) build

EE_PUSH_REF ?= 198.18.0.1:5000/anvil/anvil-ee:$(VERSION)
ee-push: ## copy the built anvil-ee image to a registry (EE_PUSH_REF, default the mirror's registry)
	$(EE) push $(EE_PUSH_REF)

e2e-awx: ee ## anvil-ee's ansible-runner runs site.yml and maintenance.yml as AWX jobs, on a testbed instance of its own
	bash scripts/pytest.sh tests/e2e -m awx --durations 10

# The newest 2.20.x and 2.21.x ansible-core on PyPI (both need Python >= 3.12: the image has 3.13).
SANITY_EE_VERSIONS ?= 2.20.10 2.21.5
sanity-ee: build ## ansible-test sanity of the tarball in a scratch copy of anvil-ee, per ansible-core of SANITY_EE_VERSIONS
	$(EE) sanity $(SANITY_EE_VERSIONS)
