// Package nkbin builds the nodekeeper binary for tests that run it as a
// separate process (in a network namespace, a container or a VM). Used only
// by tests.
package nkbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Build builds ./cmd/nodekeeper static (CGO_ENABLED=0, -trimpath, so it runs
// on any libc: a container's or a VM's) into a temporary directory of t and
// returns its path. The go command is the one running the test: `go test`
// puts its toolchain first in PATH.
func Build(t testing.TB) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found to build nodekeeper: %v", err)
	}
	out := filepath.Join(t.TempDir(), "nodekeeper")
	start := time.Now()
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, "./cmd/nodekeeper")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nodekeeper: %v\n%s", err, b)
	}
	t.Logf("built nodekeeper in %v", time.Since(start).Round(time.Millisecond))
	return out
}

// repoRoot is the repository's root: three levels above this file.
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
