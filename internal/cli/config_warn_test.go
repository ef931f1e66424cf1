package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A valid file whose kubelet.unit does not look like kubelet's is valid
// (exit 0) and says why it is suspicious, on stderr, with the file and line.
func TestConfigValidateWarns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("kubelet:\n  unit: sshd.service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "config", "validate", p)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if want := "warning: " + p + ":2: kubelet.unit: \"sshd.service\" does not look like kubelet's service"; !strings.HasPrefix(errs, want) {
		t.Errorf("stderr %q\nwant prefix %q", errs, want)
	}
}
