# Starlab: `make lab` brings the lab up, `make test` runs every test layer.
SHELL := /bin/bash
GO ?= go
BIN := bin
OUT := out
export CGO_ENABLED := 0
BINARIES := starlab starlab-agent starlab-cni starlab-observer starlab-demo
# Debian packages the build, tests and benchmarks need (Docker and debootstrap are also ensured by `starlab up`).
APT_PACKAGES := docker.io debootstrap bash-static clang-16 llvm-16 libbpf-dev iproute2 iptables jq iperf3 chromium tmux ca-certificates

.PHONY: all deps build hubble lab down test test-unit fuzz test-datapath test-e2e test-e2e-extra bench bench-lab generate check-generate vet fmt clean

all: build

# Install missing Debian packages (as root, Debian only); a no-op when everything is present.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then echo "missing packages:$$missing (install them as root with apt-get)"; exit 1; fi; \
	  echo "installing:$$missing"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

# The real hubble CLI (github.com/cilium/cilium/hubble v1.20.x), built offline from its own module
# internal/hubblecli (Cilium's Kubernetes client needs its own client-go); the e2e layer runs it.
hubble:
	@mkdir -p $(BIN)
	cd internal/hubblecli && $(GO) build -trimpath -o $(CURDIR)/$(BIN)/hubble github.com/cilium/cilium/hubble

lab: deps build
	$(BIN)/starlab up

down: build
	$(BIN)/starlab down

vet:
	$(GO) vet ./...
	$(GO) vet -tags datapath ./...
	$(GO) vet -tags e2e ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

generate:
	$(GO) generate ./datapath/...

# The committed BPF objects must be what `make generate` produces from bpf/.
check-generate: generate
	@git diff --exit-code -- datapath || { echo "generated BPF objects are stale: run 'make generate' and commit"; exit 1; }

# Layer 1: pure Go unit tests (no root, no cluster).
test-unit:
	$(GO) test -count=1 ./...

# Fuzzing: the policy compiler's FuzzCompile (random clusters and policies against the naive
# evaluator, over-eager fail-closed included) for FUZZTIME beyond its seeds. Each new interesting
# input is minimized for at most FUZZMINIMIZETIME: with go's default (60s) the first one or two
# minimizations took the whole minute (5,785 executions, then 0/s for 55 s; 6 new inputs); with 3s
# one worker ran 20,261 executions in 30 s and found 37.
FUZZTIME ?= 60s
FUZZMINIMIZETIME ?= 3s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./datapath/policy/

# Packages holding tests of a layer, found by their build tag.
tagged = $(shell grep -rl --include='*_test.go' '^//go:build $(1)' . | xargs -rn1 dirname | sort -u)

# Layer 2: datapath tests: root, network namespaces, real BPF programs, real packets. Under load the
# verifier alone takes minutes per package, hence the timeout over go test's 10 min default.
test-datapath:
	$(GO) test -count=1 -p 1 -tags datapath -timeout 30m $(call tagged,datapath)

# Layer 3: end-to-end on real kind clusters. One shared lab ($(E2E_LAB)) serves every package that needs a
# running lab; the lifecycle tests create and delete their own uniquely named clusters. The lab is removed
# at the end whatever the result; the node image stays in the content-keyed cache (/var/cache/starlab).
E2E_LAB ?= starlab-e2e
# Not in make test: the kube-proxy reference benchmark (a second lab, minutes of its own); `make
# test-e2e-extra` runs it on a lab of its own. The upstream ClusterNetworkPolicy conformance profile runs in
# make test (its workloads need --test-images), then, in a second report, the suite's SCTP tests rewritten
# without their SCTP probes (npconformance/nosctptests; this kernel has no SCTP).
E2E_EXTRA = TestBenchServicesQuick
define e2e_run
	@set -o pipefail; rc=0; \
	$(BIN)/starlab down --name $(1) >/dev/null 2>&1 || true; \
	$(BIN)/starlab up --name $(1) $(2) --set clusterNetworkPolicy.experimental=true || rc=$$?; \
	if [ $$rc = 0 ]; then \
	  STARLAB_LAB=$(1) STARLAB_REPORT_DIR=$(CURDIR)/$(OUT)/$(4) \
	    $(GO) test -count=1 -p 1 -tags e2e -timeout 75m $(3) $(call tagged,e2e) || rc=$$?; \
	fi; \
	$(BIN)/starlab down --name $(1) || true; \
	exit $$rc
endef
test-e2e: export STARLAB_CONFORMANCE_WITHOUT_SCTP_PROBES = 1
test-e2e: build hubble
	$(call e2e_run,$(E2E_LAB),--test-images,-skip '^($(E2E_EXTRA))$$',e2e)

test-e2e-extra: build hubble
	$(call e2e_run,$(E2E_LAB)-extra,--test-images,-run '^($(E2E_EXTRA))$$',e2e-extra)

test: deps vet check-generate test-unit fuzz test-datapath test-e2e

# In-process benchmarks; with STARLAB_LAB set, also the flow pipeline on that lab (bench-lab).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -tags datapath ./datapath/... ./internal/flow/... ./internal/hubbleapi/... ./internal/observer/...
	@if [ -n "$(STARLAB_LAB)" ]; then $(MAKE) bench-lab; else echo "STARLAB_LAB unset: the lab flow-throughput benchmark (make bench-lab) was not run"; fi

# The flow pipeline end to end on a running lab (docs/BENCHMARKS.md "Flow throughput"): 10k, 50k and
# 100k flow events/s per node for STARLAB_FLOWBENCH_SECONDS (60) each, sent by STARLAB_FLOWBENCH_SENDERS (2)
# goroutines of one generator pod; table in $(OUT)/bench/flow-throughput.md.
bench-lab: build
	@test -n "$(STARLAB_LAB)" || { echo "bench-lab: set STARLAB_LAB to a running lab (bin/starlab up --name X)"; exit 1; }
	STARLAB_REPORT_DIR=$(CURDIR)/$(OUT)/bench $(GO) test -run '^$$' -bench BenchmarkFlowThroughput -benchtime 1x -timeout 30m -tags e2e ./internal/observer/

clean:
	rm -rf $(BIN) $(OUT)
