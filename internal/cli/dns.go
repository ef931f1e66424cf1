package cli

import (
	"context"
	"encoding/json"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
)

type dnsReport struct{ *dnsprobe.Report }

func (r dnsReport) verdict() check.Verdict       { return r.Verdict }
func (r dnsReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// checkDNS is `check dns`: one probe now, with the daemon's mapping of the
// dns.* keys; it answers whether or not dns.enabled is set (that key only
// starts the daemon's probe, and adds dns to `check all`).
func checkDNS(ctx context.Context, e checkEnv) reporter {
	return dnsReport{dnsprobe.Checker{FS: e.h}.Run(ctx, dnsprobe.ConfigFrom(e.cfg))}
}

// inAll: `check all` probes the cluster DNS only where dns.enabled says so
// (a probe sends queries, and waits seconds for a dead server).
func inAll(name check.Name, e checkEnv) bool {
	return name != dnsprobe.CheckName || e.cfg.DNS.Enabled
}
