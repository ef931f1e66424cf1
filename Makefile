# nodekeeper — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= $(shell scripts/ensure-go.sh)
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS     := -s -w -X github.com/nodekeeper/nodekeeper/internal/buildinfo.Version=$(VERSION)
BIN         := bin/nodekeeper
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 10s
export NODEKEEPER_CACHE ?= /var/cache/nodekeeper-test

.PHONY: help build check test unit vm-image lint tidy bench fuzz clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/nodekeeper
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/nodekeeper

check: build ## build, then judge this machine once (read-only): the per-CPU picture and every check
	$(BIN) status
	@echo
	@for c in irq kubelet compaction softirq; do printf '%-11s ' "$$c:"; $(BIN) check $$c; echo "            (exit $$?: 0 ok, 1 problem, 2 unknown)"; done

unit: ## fast tests only: fixture trees and fakes, no root, no containers
	$(GO) test -count=1 -short ./...
	cd tools && $(GO) test -count=1 -short ./...

test: ## every test layer this machine allows (installs what they need; says why a layer is skipped)
	@scripts/test.sh "$(GO)"

vm-image: ## (root) install qemu and build the cached VM test image; prints its directory
	@scripts/vm-deps.sh >&2 && scripts/build-vm-image.sh

lint: ## gofmt, go vet, staticcheck (the root module and the tools/ module)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools && $(GO) vet ./...
	GOFLAGS=-mod=mod $(GO) run $(STATICCHECK) ./...
	cd tools && GOFLAGS=-mod=mod $(GO) run $(STATICCHECK) ./...

tidy: ## go mod tidy in both modules: the daemon's (root) and the packaging tools' (tools/)
	$(GO) mod tidy
	cd tools && $(GO) mod tidy

bench: ## benchmarks with allocation counts, then start-up time against a hello-world binary and the dependencies' floor
	$(GO) test -run '^$$' -bench . -benchmem ./...
	GO='$(GO)' scripts/startup-bench.sh

fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null; \
	  done; done

clean: ## remove build outputs (the test cache directory is kept)
	rm -rf bin dist

DIST ?= dist
.PHONY: deb rpm packages

deb: build ## build the Debian package into dist/ (nfpm, a tool of the tools/ module)
	GO='$(GO)' VERSION='$(VERSION)' BIN='$(BIN)' DIST='$(DIST)' packaging/package.sh deb

rpm: build ## build the RPM package into dist/ (nfpm, a tool of the tools/ module)
	GO='$(GO)' VERSION='$(VERSION)' BIN='$(BIN)' DIST='$(DIST)' packaging/package.sh rpm

packages: deb rpm ## build both packages into dist/

IMAGE_ARCHES ?= amd64 arm64
IMAGE_DIR    ?= $(DIST)/image
.PHONY: image

image: ## build the installer image (OCI layout, amd64 + arm64, no base image) into dist/image/oci; prints its digest
	@set -e; for a in $(IMAGE_ARCHES); do \
	  mkdir -p $(IMAGE_DIR)/$$a; \
	  CGO_ENABLED=0 GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_DIR)/$$a/nodekeeper ./cmd/nodekeeper; \
	  for p in deb rpm; do \
	    GO='$(GO)' VERSION='$(VERSION)' BIN=$(IMAGE_DIR)/$$a/nodekeeper DIST=$(IMAGE_DIR)/$$a NODEKEEPER_ARCH=$$a \
	      packaging/package.sh $$p >&2; \
	  done; \
	  v=; [ $$a != arm64 ] || v=/v8; \
	  platforms="$$platforms -platform linux/$$a$$v=$(abspath $(IMAGE_DIR))/$$a"; \
	done; \
	export SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)}; \
	digest=$$(cd tools && $(GO) run ./ociimage -out $(abspath $(IMAGE_DIR))/oci -version '$(VERSION)' $$platforms); \
	echo "$$digest" >$(IMAGE_DIR)/digest; \
	echo "nodekeeper-installer $(VERSION) in $(IMAGE_DIR)/oci (OCI layout): $$digest"
