# invdeploy developer entry points. `make up` and `make test` are the two
# commands README promises on a fresh machine with Go and Docker.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
GIT_SHA := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/invdeploy/invdeploy/internal/version.Version=$(VERSION) -X github.com/invdeploy/invdeploy/internal/version.Revision=$(GIT_SHA)
TEST_TIMEOUT ?= 75m

.PHONY: all build up down test unit e2e images deps lint fmt bench-api bench-deploy bench-remote bench-inner-loop clean

all: build

## build: bin/invdeploy, bin/invoicing-api and bin/invdeploy-proxy
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/invdeploy ./cmd/invdeploy
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/invoicing-api ./cmd/invoicing-api
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/invdeploy-proxy ./cmd/invdeploy-proxy

## deps: Debian packages the tests and the test bed need, and the S3-compatible server of the backup tests (idempotent, quick when present)
deps:
	bash scripts/deps.sh
	bash scripts/s3bed.sh

## images: every image the bundled stack, the Dockerfile and the tests need, in the local engine
images: deps
	bash test/images/build.sh

## up: build invdeploy and bring up the bundled stack (prints the URL)
up: build images
	./bin/invdeploy up

## down: stop the bundled stack (keeps its data volume)
down: build
	./bin/invdeploy down

## k8sbed: the Kubernetes test bed's binaries, built once per machine from the Go module proxy and cached by version outside the repository (~6-15 min cold, seconds warm)
.PHONY: k8sbed
k8sbed: deps
	bash test/k8sbed/k8sbed.sh build

## test: unit + integration + end-to-end, against the real engine, PostgreSQL and test bed (the Kubernetes suite: make test-k8s)
test: deps images
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## unit: the fast tests only (no Docker, no test bed)
unit:
	$(GO) test -count=1 -short ./...

## e2e: only the end-to-end tests
e2e: deps images
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/...

## lint: gofmt + go vet + go.mod tidy (requirements must match the imports) + docs/reference matches the commands
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags k8sbed ./test/k8s
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@out=$$($(GO) test -count=1 -run 'TestReference$$' ./cmd/invdeploy 2>&1) || { echo "$$out"; echo "docs/reference does not match the commands: run make docs"; exit 1; }

## docs: regenerate the command reference (docs/reference) from the cobra commands
.PHONY: docs
docs:
	$(GO) test -count=1 -run 'TestReference$$' ./cmd/invdeploy -update

## bench-remote: remote up to a simulated EC2 host over SSH, cold and warm: seconds and bytes sent
bench-remote: deps images
	set -o pipefail; INVDEPLOY_BENCH_REMOTE=1 $(GO) test -count=1 -timeout 30m -run 'TestBenchRemote$$' -v ./test/e2e | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## bench-swarm: 3-node swarm on the test bed: time to init, cold and warm swarm up, bytes per node vs docker save, API req/s through the edge at 1 and 3 replicas (~5 min)
.PHONY: bench-swarm
bench-swarm: deps images
	set -o pipefail; INVDEPLOY_BENCH_SWARM=1 $(GO) test -count=1 -timeout 30m -run 'TestBenchSwarm$$' -v ./test/swarm | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## bench-backup: invdeploy backup/restore vs pg_dump -Fc/pg_restore of the same cluster (pgbench scale 20, ~336 MiB; BENCH_SCALE=N) in one run, and the invoice load with continuous protection on vs off (target >= 0.9) (~5 min)
.PHONY: bench-backup
bench-backup: deps images
	set -o pipefail; INVDEPLOY_BENCH_BACKUP=1 $(GO) test -count=1 -timeout 30m -run 'TestBenchBackup$$' -v ./test/e2e | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## test-k8s: the Kubernetes suite (test/k8s, build tag k8sbed) on the real one-node bed; not yet part of make test (see docs/guides/kubernetes.md, "Status")
.PHONY: test-k8s
test-k8s: deps images k8sbed
	$(GO) test -count=1 -tags k8sbed -timeout 30m -v ./test/k8s

## bench-k8s: on the Kubernetes bed, up to ready and an image rollout: invdeploy k8s up vs kubectl apply + rollout status of the same rendered manifests (~5 min warm)
.PHONY: bench-k8s
bench-k8s: deps images k8sbed
	set -o pipefail; INVDEPLOY_BENCH_K8S=1 $(GO) test -count=1 -timeout 30m -tags k8sbed -run 'TestBenchK8s$$' -v ./test/k8s | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## bench-deploy: time to all-healthy, invdeploy up vs docker-compose up -d + polling, and a no-op up
bench-deploy: deps build images
	bash test/e2e/bench-deploy.sh

## bench-rollout: failed requests and times of a rollout and a rollback under 16 clients, through the proxy vs a plain recreate; the proxy's cost on the API (~3 min; BENCH=cost: the cost only)
.PHONY: bench-rollout
bench-rollout: deps images
	set -o pipefail; INVDEPLOY_BENCH_ROLLOUT=$${BENCH:-1} $(GO) test -count=1 -timeout 30m -run 'TestBenchRollout$$' -v ./test/e2e | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## bench-edge: HTTPS req/s and p99 through the edge vs plain HTTP through the rollout proxy, same run (target >= 0.8), CPU per request, on a trivial service and on the bundled API, and the time to the first certificate from pebble (~6 min)
.PHONY: bench-edge
bench-edge: deps images
	set -o pipefail; INVDEPLOY_BENCH_EDGE=1 $(GO) test -count=1 -timeout 30m -run 'TestBenchEdge$$' -v ./test/e2e | grep -v -e '^=== RUN' -e '^--- ' -e '^PASS' -e '^ok'

## bench-inner-loop: one-line change in api/ to healthy, BuildKit + cache mounts vs classic builder, and remote bytes (~5-20 min: one cold classic build)
bench-inner-loop: build images
	bash test/e2e/bench-inner-loop.sh

## bench-api: the API vs pgbench and a minimal net/http+pgx server on one PostgreSQL: req/s, p50, p99, ratios, p99 at half load (~4 min)
bench-api: deps
	bash scripts/bench-api.sh

## bench-monitoring: API req/s with Prometheus scraping every 5 s / without (target >= 0.97), Prometheus memory after 10 min of load
.PHONY: bench-monitoring
bench-monitoring: deps images
	bash scripts/bench-monitoring.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
