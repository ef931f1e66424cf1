package snat

import (
	"net/netip"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

// ConfigFrom maps the snat.* keys of cfg to the check's configuration: the
// one mapping the daemon and `nodekeeper check`/`top`/`status` share. The
// config package has validated every key; a prefix it could not parse
// (only possible for a Config built in code) is left out.
func ConfigFrom(cfg config.Config) Config {
	s := cfg.SNAT
	c := Config{Enabled: s.Enabled, Interval: s.Interval, AllocatedPorts: s.AllocatedPorts,
		BackendPoolSize: s.BackendPoolSize, WarnRatio: s.WarnRatio}
	for _, p := range s.PrivateCIDRs {
		if pfx, err := netip.ParsePrefix(strings.TrimSpace(p)); err == nil {
			c.PrivateCIDRs = append(c.PrivateCIDRs, pfx.Masked())
		}
	}
	return c
}
