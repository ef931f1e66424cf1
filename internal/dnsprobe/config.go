// Package dnsprobe owns the cluster DNS probe (`check dns`): where the
// servers are (dns.servers, else kubelet's clusterDNS from its flags or its
// config file), one resolution of dns.probeName the way a pod's resolver
// makes it (UDP, a retry after a timeout, TCP when the answer comes back
// truncated), and the judgement of what came back: answer time, timeouts,
// SERVFAIL, NXDOMAIN, a refused port or bytes that are not DNS. It reports
// and never changes the node's DNS settings.
package dnsprobe

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
)

// CheckName is the check's name in `nodekeeper check` and the contract.
const CheckName check.Name = "dns"

// Config is the `dns` section of the configuration.
type Config struct {
	// Enabled: the daemon probes every Interval (the CLI always answers).
	Enabled bool
	// ProbeName is the name resolved (an A query).
	ProbeName string
	// Servers are the servers to ask, as IP:port; empty = kubelet's clusterDNS.
	Servers []netip.AddrPort
	// Timeout is the wait for one answer.
	Timeout time.Duration
	// Interval between two probes in the daemon.
	Interval time.Duration
}

// DefaultConfig is the configuration package's default, mapped by ConfigFrom.
func DefaultConfig() Config { return ConfigFrom(config.Default()) }

// ConfigFrom maps the dns.* keys of cfg to the probe's configuration: the
// one mapping the daemon and `nodekeeper check`/`status` share. The config
// package has validated every key; an address it could not parse (only
// possible for a Config built in code) is left out.
func ConfigFrom(cfg config.Config) Config {
	d := cfg.DNS
	c := Config{Enabled: d.Enabled, ProbeName: strings.TrimSpace(d.ProbeName), Timeout: d.Timeout, Interval: d.Interval}
	for _, s := range d.Servers {
		if ap, err := ParseServer(s); err == nil {
			c.Servers = append(c.Servers, ap)
		}
	}
	return c
}

// Validate says what is wrong with c, in a person's words.
func (c Config) Validate() error {
	if c.ProbeName == "" {
		return fmt.Errorf("dns.probeName is empty: want a name such as kubernetes.default.svc.cluster.local")
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("dns.timeout %v: must be positive", c.Timeout)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("dns.interval %v: must be positive", c.Interval)
	}
	return nil
}

// Port is DNS's port, taken when an address names none.
const Port = 53

// ParseServer reads a server address: an IP (port 53) or IP:port, IPv6 in
// brackets when it has a port.
func ParseServer(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone is not a DNS server address", s)
		}
		return netip.AddrPortFrom(a.Unmap(), Port), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address or IP:port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ServerString shows a server as a person reads it: 10.0.0.10, or with
// its port when that is not 53.
func ServerString(ap netip.AddrPort) string {
	if ap.Port() == Port {
		return ap.Addr().String()
	}
	return net.JoinHostPort(ap.Addr().String(), fmt.Sprint(ap.Port()))
}
