# Container images built on this machine without a Docker engine or a registry
# (debootstrap + buildah; tests/support/imagebuild.py). Cached in $MOODLE_ARCHIVER_CACHE_DIR/images.
IMAGES_PY ?= $(VENV)/bin/python

.PHONY: node-deps images images-refs
node-deps: setup ## (after setup: apt never runs twice at once) install Debian's containerd, runc, CNI plugins, debootstrap and buildah (idempotent)
	@scripts/node-deps.sh

images: setup node-deps ## build the operator, job, pause and base images locally (cached)
	@$(IMAGES_PY) -m tests.support.imagebuild build

images-refs: images ## print the local image references as JSON
	@$(IMAGES_PY) -m tests.support.imagebuild refs
