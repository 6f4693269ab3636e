# The nspawn testbed (tools/testbed): machines that behave like small bare-metal hosts.
NODES ?= 3
CONTROL_PLANES ?= 1
TESTBED := $(BIN)/python -m tools.testbed

.PHONY: testbed-build testbed-up testbed-down testbed-status testbed-exec testbed-stop testbed-start testbed-add molecule

testbed-build: setup ## build (or rebuild with FORCE=1) the cached base root filesystem of testbed machines
	$(TESTBED) build $(if $(FORCE),--force)

testbed-up: setup ## boot NODES (3) testbed machines, CONTROL_PLANES (1) of them control planes; writes inventories/testbed
	$(TESTBED) up --nodes $(NODES) --control-planes $(CONTROL_PLANES)

testbed-down: ## remove testbed machines, veths, mounts, processes (and the bridge unless the mirror uses it)
	$(TESTBED) down

testbed-status: ## testbed machines, their state and memory
	$(TESTBED) status

testbed-exec: ## run CMD inside testbed machine NODE: make testbed-exec NODE=anvil-w1 CMD='systemctl status'
	@test -n "$(NODE)" -a -n "$(CMD)" || { echo "usage: make testbed-exec NODE=<name> CMD='<command>'" >&2; exit 2; }
	$(TESTBED) exec $(NODE) -- '$(subst ','\'',$(CMD))'

testbed-stop: ## power testbed machine NODE off (a host going down)
	@test -n "$(NODE)" || { echo "usage: make testbed-stop NODE=<name>" >&2; exit 2; }
	$(TESTBED) stop $(NODE)

testbed-start: ## boot testbed machine NODE again
	@test -n "$(NODE)" || { echo "usage: make testbed-start NODE=<name>" >&2; exit 2; }
	$(TESTBED) start $(NODE)

testbed-add: setup ## add machine NODE (anvil-cpN / anvil-wN) to the running testbed and the inventory
	@test -n "$(NODE)" || { echo "usage: make testbed-add NODE=<name>" >&2; exit 2; }
	$(TESTBED) add $(NODE)

molecule: setup ## molecule test of the os_prepare role on testbed machines (needs the mirror: make mirror-up)
	molecule test -s os_prepare
