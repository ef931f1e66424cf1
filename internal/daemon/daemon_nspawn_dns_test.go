package daemon_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"

	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
)

// The DNS probe under the hardened unit, in a container with a network
// namespace of its own: the cluster DNS address (10.0.0.10, put on the
// container's loopback, nothing listening) is outside the unit's
// IPAddressAllow=, so the probe says its queries are blocked (unknown, not a
// problem of the DNS); with the drop-in the documentation shows, the queries
// go out and the kernel's port unreachable makes it a problem.
func TestNspawnDNSProbeUnderTheUnit(t *testing.T) {
	nspawn.Require(t)
	bin := nkbin.Build(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	n := &node{ctx: ctx, listen: "127.0.0.1:9829"}
	n.c = nspawn.Boot(t, nspawn.Options{Name: "nk-dns", PrivateNetwork: true,
		Binds: []nspawn.Bind{{Source: bin, Target: "/usr/bin/nodekeeper", ReadOnly: true}}})
	n.exec(t, "ip", "addr", "add", "10.0.0.10/32", "dev", "lo")
	n.install(t, `metrics:
  listen: "127.0.0.1:9829"
imds:
  enabled: "false"
dns:
  enabled: true
  servers: ["10.0.0.10"]
  timeout: 500ms
  interval: 5s
`)
	// Whether this container's systemd enforces IPAddressDeny= at all (it
	// needs BPF on the unified cgroup hierarchy; a hybrid host's container
	// may go without, silently): the same sandbox around one check.
	probe, perr := n.c.Exec(n.ctx, "systemd-run", "--wait", "--pipe", "--quiet", "-p", "IPAddressDeny=any",
		"-p", "IPAddressAllow=127.0.0.0/8 ::1/128 169.254.169.254", "/usr/bin/nodekeeper", "check", "dns")
	enforced := strings.Contains(probe, "sending blocked")
	t.Logf("check dns under IPAddressDeny=any in a transient unit: %q, %v (firewall enforced: %v)", strings.TrimSpace(probe), perr, enforced)

	n.exec(t, "systemctl", "start", nkUnit)
	got := n.waitDNS(t, func(c state.Check) bool { return c.Status != "" })
	switch {
	case enforced && (got.Status != "unknown" || !strings.Contains(got.Message, "sending blocked")):
		t.Errorf("the probe under the unit's allow list: %s %q; want unknown, sending blocked", got.Status, got.Message)
	case !enforced && got.Status != "problem":
		t.Errorf("the probe where the allow list is not enforced: %s %q; want a problem (nothing listens)", got.Status, got.Message)
	case !enforced:
		t.Logf("this container's systemd does not enforce IPAddressDeny=: the blocked case is left to the unit tests")
	}

	if err := n.c.WriteFile("/etc/systemd/system/"+nkUnit+".d/50-dns.conf", []byte("[Service]\nIPAddressAllow=10.0.0.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.exec(t, "systemctl", "daemon-reload")
	n.exec(t, "systemctl", "restart", nkUnit)
	got = n.waitDNS(t, func(c state.Check) bool { return c.Status != "" && !strings.Contains(c.Message, "blocked") })
	var r dnsprobe.Report
	_ = json.Unmarshal(got.Report, &r)
	if got.Status != "problem" || r.Result != dnsprobe.ResultRefused || r.Server != "10.0.0.10" {
		t.Errorf("the probe with the DNS drop-in: %s %q (%+v); want a problem: nothing listens at 10.0.0.10", got.Status, got.Message, r)
	}
}

// waitDNS waits for the state file's dns check to satisfy ok.
func (n *node) waitDNS(t *testing.T, ok func(state.Check) bool) state.Check {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last state.Check
	for time.Now().Before(deadline) {
		if b, err := n.c.ReadFile("/" + state.RelPath); err == nil {
			var s state.State
			if json.Unmarshal(b, &s) == nil {
				last = s.Checks[dnsprobe.CheckName]
				if ok(last) {
					return last
				}
			}
		}
		sleep(n.ctx, t, poll)
	}
	t.Fatalf("the dns check in the state file after 30s: %+v", last)
	return last
}
