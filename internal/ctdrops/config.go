// Package ctdrops owns `check conntrack`: the drops that connection
// tracking causes on the node and the places they show. It reads the
// kernel's per-CPU conntrack counters (insert_failed, drop, early_drop,
// clash_resolve, chaintoolong) and the table's fill through
// internal/conntrack, the UDP receive errors of the host and of each cluster
// DNS pod's network namespace (CoreDNS, NodeLocal DNSCache, LocalDNS: found
// by process name, named by their pod cgroup), and the kernel's own
// "nf_conntrack: table full, dropping packet" lines from /dev/kmsg; it turns
// two samples into per-second rates (counter resets and CPUs that come and go
// are never read as drops) and judges them. It reports only: nodekeeper
// changes no sysctl.
package ctdrops

import (
	"fmt"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
)

// CheckName is the check's name in `nodekeeper check` and the contract.
const CheckName check.Name = "conntrack"

// Config is the `conntrack` section of the configuration.
type Config struct {
	// Enabled: "auto" (on where the counters can be read), "true", "false".
	Enabled string
	// Window is the time between two samples: rates are over it.
	Window time.Duration
	// FillProblem: problem when entries/max reaches it.
	FillProblem float64
}

// ConfigFrom maps the conntrack.* keys: the one mapping the daemon and the
// CLI share.
func ConfigFrom(cfg config.Config) Config {
	c := cfg.Conntrack
	return Config{Enabled: c.Enabled, Window: c.Window, FillProblem: c.FillProblem}
}

// Validate says what is wrong with c, in a person's words (a Config built in
// code; the config package validates files).
func (c Config) Validate() error {
	switch {
	case c.Enabled != "auto" && c.Enabled != "true" && c.Enabled != "false":
		return fmt.Errorf("conntrack.enabled %q: want auto, true or false", c.Enabled)
	case c.Window < time.Second:
		return fmt.Errorf("conntrack.window %v: want at least 1s", c.Window)
	case !(c.FillProblem > 0 && c.FillProblem <= 1):
		return fmt.Errorf("conntrack.fillProblem %v: want a ratio in (0, 1]", c.FillProblem)
	}
	return nil
}
