# Targets a newcomer can guess. `make test` is the README's test command.
GO ?= go
STATICCHECK ?= $(shell command -v staticcheck || echo $(HOME)/go/bin/staticcheck)

.PHONY: run test lint bench build fuzz web

run:
	$(GO) run ./cmd/parleyd

test:
	$(GO) test -race -p 4 -timeout 30m ./...

build:
	$(GO) build -o bin/ ./cmd/...

# The browser client: rebuild webui/dist (commit it), then build parleyd,
# which embeds it.
web:
	cd clients && (test -d node_modules || npm ci --no-audit --no-fund) && npm run build -w web
	$(GO) build -o bin/ ./cmd/parleyd

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./...

# A short run of every fuzz target (each decoder of client input).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
	    echo "$$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s $$pkg || exit 1; \
	  done; \
	done
