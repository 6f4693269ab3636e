# node_maintenance module: focused test and benchmark entry points (the full suites are `make unit`,
# `make integration`, `make bench`).
.PHONY: test-node-maintenance bench-node-maintenance

test-node-maintenance: setup ## node_maintenance unit + integration tests (local API with kwok nodes)
	python -m pytest tests/unit/test_drain.py tests/integration/test_node_maintenance.py

# BENCH_NM_NODES / BENCH_NM_PODS size the loaded cluster (default 1000 / 30000), e.g. 5000 / 150000.
bench-node-maintenance: setup ## node_maintenance vs kubernetes.core.k8s_drain benchmark
	$(BIN)/python -m tests.bench.bench_node_maintenance
