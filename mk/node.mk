# A real node (kubelet + containerd + runc) for the local control plane, the whole product on it
# (`make demo`), and the same demo on kind for machines with Docker and the internet.
DEMO_DIR ?= $(CURDIR)/out/demo-cluster
NODE_PY ?= $(VENV)/bin/python

.PHONY: node-up node-down demo-runner demo-down kind-demo e2e
node-up: images cluster-up ## join a real node (kubelet + containerd) to the cluster of cluster-up
	@$(NODE_PY) -m tests.support.realnode up --cluster-dir "$(CLUSTER_DIR)" --dir "$(CLUSTER_DIR)/node"

node-down: ## stop the node of node-up (pods, containerd, kubelet, mounts, cgroups)
	@$(NODE_PY) -m tests.support.realnode down --dir "$(CLUSTER_DIR)/node"

demo-runner: setup ## the job runner alone against a fake Moodle (no Kubernetes)
	$(PY) scripts/demo_runner.py

demo-down: ## stop everything `make demo` started (also after an interrupted demo)
	@$(NODE_PY) scripts/demo.py down --dir "$(DEMO_DIR)"

kind-demo: ## the demo on a kind cluster (needs Docker, kind, kubectl, helm and the internet)
	@scripts/kind-demo.sh

e2e: setup node-deps cluster-tools images ## the end-to-end tests on a real node (tests/e2e; images built first)
	$(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)
