package irqbalance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

func fixtureFS(t *testing.T, root string) *hostfs.FS {
	t.Helper()
	h, err := hostfs.New(hostfs.Paths{Proc: t.TempDir(), Sys: t.TempDir(), Cgroup: t.TempDir(), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestInstalledVersion(t *testing.T) {
	for _, tc := range []struct {
		root  string
		want  Installed
		buggy bool
	}{
		{"debian12", Installed{Version: "1.9.2-1", Source: SourceDpkg}, false},
		{"ubuntu2204", Installed{Version: "1.8.0-1build1", Source: SourceDpkg}, true},
		{"ubuntu2204-fixed", Installed{Version: "1.8.0-1ubuntu0.1", Source: SourceDpkg}, false},
		{"removed", Installed{Version: "", Source: SourceDpkg}, false},
		{"no-dpkg", Installed{Version: "", Source: SourceUnknown}, false},
	} {
		t.Run(tc.root, func(t *testing.T) {
			got, err := InstalledVersion(fixtureFS(t, filepath.Join("testdata", tc.root)))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("InstalledVersion = %+v, want %+v", got, tc.want)
			}
			if buggy, why := KnownBuggy(got.Version); buggy != tc.buggy || why == "" {
				t.Fatalf("KnownBuggy(%q) = %v, %q; want %v", got.Version, buggy, why, tc.buggy)
			}
		})
	}
}

func TestInstalledVersionUnreadable(t *testing.T) {
	root := t.TempDir()
	// A directory where the status file should be: open works, read fails.
	if err := os.MkdirAll(filepath.Join(root, "var", "lib", "dpkg", "status"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := InstalledVersion(fixtureFS(t, root))
	if err == nil {
		t.Fatalf("InstalledVersion = %+v, nil; want an error", got)
	}
	if got.Version != "" {
		t.Fatalf("InstalledVersion = %+v on error, want no version", got)
	}
}
