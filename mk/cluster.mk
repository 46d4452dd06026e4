# Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# KWOK nodes) from pinned Go modules: cluster/versions.env, cluster/build-tools.sh,
# tests/support/localcluster.py.
CLUSTER_DIR ?= $(CURDIR)/out/cluster
CLUSTER_NODES ?= 3
CLUSTER_PY ?= python3

.PHONY: cluster-tools cluster-up cluster-down cluster-status
cluster-tools: ## build pinned kube-*, kubectl, etcd, KWOK, Helm, crictl, local-path-provisioner into the cache (idempotent)
	@cluster/build-tools.sh

cluster-up: cluster-tools ## start a local control plane with KWOK nodes (kubeconfig: out/cluster/kubeconfig)
	@$(CLUSTER_PY) -m tests.support.localcluster up --dir "$(CLUSTER_DIR)" --nodes $(CLUSTER_NODES)
	@echo "cluster: try  $$(cluster/build-tools.sh bin-dir)/kubectl --kubeconfig $(CLUSTER_DIR)/kubeconfig get nodes"

cluster-down: ## stop the control plane of cluster-up; nothing of it keeps running
	@$(CLUSTER_PY) -m tests.support.localcluster down --dir "$(CLUSTER_DIR)"

cluster-status: ## show whether the cluster of cluster-up runs, its ports and pids
	@$(CLUSTER_PY) -m tests.support.localcluster status --dir "$(CLUSTER_DIR)"
