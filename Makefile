# Starlab: `make lab` brings the lab up, `make test` runs every test layer.
SHELL := /bin/bash
GO ?= go
BIN := bin
export CGO_ENABLED := 0
BINARIES := starlab starlab-agent starlab-cni starlab-observer starlab-demo

.PHONY: all build lab down test test-unit test-datapath test-e2e bench generate check-generate vet fmt clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ $(foreach b,$(BINARIES),$(if $(wildcard cmd/$(b)),./cmd/$(b)))

lab: build
	$(BIN)/starlab up

down: build
	$(BIN)/starlab down

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

# Unit tests: pure Go, no root, no cluster.
test-unit:
	$(GO) test -count=1 ./...

test: vet test-unit
