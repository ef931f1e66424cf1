// Package snat owns the judgement of SNAT port use on the node: which
// conntrack flows spend load-balancer SNAT ports (public destinations), how
// Azure counts them (TCP per destination IP and port, UDP per destination
// IP), the port budget (configured, Azure's default table by backend pool
// size, or 1 024), and who spends them — each busy source address attributed
// to its pod (network namespace → process → pod cgroup → kubelet's pod log
// directory), to the host, or to nobody known. Reading the table is
// internal/conntrack's; this package aggregates the stream into bounded maps
// and never holds the table.
package snat

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// CheckName is the check's name in `nodekeeper check` and the contract.
const CheckName check.Name = "snat"

// Config is the `snat` section of the configuration.
type Config struct {
	// Enabled: "auto" (when the conntrack table can be read), "true", "false".
	Enabled string
	// Interval between two dumps in the daemon.
	Interval time.Duration
	// AllocatedPorts is the node's SNAT port budget towards one destination;
	// 0 = from BackendPoolSize with Azure's default table, else 1 024.
	// NAT Gateway: set 50000 (its limit of concurrent flows per destination
	// endpoint and public IP; 64 512 ports per IP in all).
	AllocatedPorts int
	// BackendPoolSize is the number of VMs in the load balancer's backend
	// pool (the cluster's nodes behind the outbound rule).
	BackendPoolSize int
	// WarnRatio: problem when demand/allocated reaches it.
	WarnRatio float64
	// PrivateCIDRs are added to the built-in private ranges: destinations in
	// them spend no SNAT port (the node's VNet prefixes, peered networks).
	PrivateCIDRs []netip.Prefix
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{Enabled: "auto", Interval: 30 * time.Second, WarnRatio: 0.8}
}

// MaxBackendPoolSize is the largest backend pool Azure's default allocation covers.
const MaxBackendPoolSize = 1000

// Validate says what is wrong with c, in a person's words.
func (c Config) Validate() error {
	switch c.Enabled {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("snat.enabled %q: want auto, true or false", c.Enabled)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("snat.interval %v: must be positive", c.Interval)
	}
	if c.AllocatedPorts < 0 {
		return fmt.Errorf("snat.allocatedPorts %d: must be 0 (Azure's default table) or positive", c.AllocatedPorts)
	}
	if c.BackendPoolSize < 0 || c.BackendPoolSize > MaxBackendPoolSize {
		return fmt.Errorf("snat.backendPoolSize %d: want 0 (unknown) to %d", c.BackendPoolSize, MaxBackendPoolSize)
	}
	if !(c.WarnRatio > 0 && c.WarnRatio <= 1) {
		return fmt.Errorf("snat.warnRatio %v: want more than 0 and at most 1", c.WarnRatio)
	}
	for _, p := range c.PrivateCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("snat.privateCIDRs: %v is not a prefix", p)
		}
	}
	return nil
}

// Where the budget comes from (allocated_source).
const (
	SourceConfig  = "config"  // snat.allocatedPorts
	SourceTable   = "table"   // Azure's default table from snat.backendPoolSize
	SourceDefault = "default" // neither known: a pool of at most 50 VMs
)

// DefaultPorts is the budget when neither the allocation nor the pool size is known.
const DefaultPorts = 1024

// Budget returns the node's SNAT port budget and where it comes from.
func (c Config) Budget() (ports int, source string) {
	switch {
	case c.AllocatedPorts > 0:
		return c.AllocatedPorts, SourceConfig
	case c.BackendPoolSize > 0:
		return DefaultAllocation(c.BackendPoolSize), SourceTable
	}
	return DefaultPorts, SourceDefault
}

// DefaultAllocation is Azure Standard Load Balancer's default SNAT ports per
// VM for a backend pool of n VMs (allocatedOutboundPorts: 0, AKS's default).
// Pools above 1 000 VMs get the smallest step, 32.
func DefaultAllocation(n int) int {
	switch {
	case n <= 50:
		return 1024
	case n <= 100:
		return 512
	case n <= 200:
		return 256
	case n <= 400:
		return 128
	case n <= 800:
		return 64
	}
	return 32
}
