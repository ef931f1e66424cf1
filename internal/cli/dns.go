package cli

import (
	"context"
	"encoding/json"
	"os"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/latency"
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
//
// The kernel-side checks join it where they have something to read: NET_RX
// latency on the live host only (under fixture roots the kernel's softirqs
// are not the fixture's), conntrack where its counters exist.
func inAll(name check.Name, e checkEnv) bool {
	switch name {
	case dnsprobe.CheckName:
		return e.cfg.DNS.Enabled
	case latency.Name:
		return e.h.Live() && e.cfg.Latency.Enabled != "false"
	case ctdrops.CheckName:
		if e.cfg.Conntrack.Enabled == "false" {
			return false
		}
		_, err := os.Stat(e.h.Proc("net", "stat", "nf_conntrack"))
		return e.h.Live() || err == nil
	}
	return true
}
