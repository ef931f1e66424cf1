package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/policy"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// TestNICNameWithAnyBytes: the kernel allows an interface name that is not
// UTF-8 ("eth\xff0"); its series must be exported with the name escaped, not
// panic (a panic before READY=1 is a crash loop under Restart=on-failure).
func TestNICNameWithAnyBytes(t *testing.T) {
	m := New()
	m.SetNICIRQs([]NICIRQ{{Interface: "eth\xff0", Queue: "input.0", IRQ: 24, CPU: 1}})
	m.SetVMBusChannels([]VMBusChannel{{Interface: "eth\xff0", Channel: "\x1b[2J", CPU: 0}})
	m.SetMemoryUnusableIndexes([]UnusableIndex{{Node: 0, Zone: "Nor\xc3mal", Index: 0.5}})
	exp := `
# HELP nodekeeper_nic_irq_cpu The CPU a NIC queue IRQ is assigned to.
# TYPE nodekeeper_nic_irq_cpu gauge
nodekeeper_nic_irq_cpu{interface="eth\\xff0",irq="24",queue="input.0"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(exp), "nodekeeper_nic_irq_cpu"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"nodekeeper_vmbus_channel_cpu": 1, "nodekeeper_memory_unusable_index": 1} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n != want {
			t.Fatalf("%s: %d series, %v", name, n, err)
		}
	}
}

// FuzzSetters: no setter panics and the registry always gathers, whatever the
// bytes of the strings that come from the kernel or IMDS.
func FuzzSetters(f *testing.F) {
	f.Add("eth\xff0", "comp0", "Normal", "Freeze", "\x89")
	f.Add("", "", "", "", "")
	f.Fuzz(func(t *testing.T, iface, queue, zone, event, version string) {
		m := New()
		m.SetNICIRQs([]NICIRQ{{Interface: iface, Queue: queue, IRQ: 1, CPU: 0}, {Interface: iface, Queue: queue, IRQ: 1, CPU: 2}})
		m.SetVMBusChannels([]VMBusChannel{{Interface: iface, Channel: queue, CPU: 1}})
		m.SetMemoryUnusableIndexes([]UnusableIndex{{Node: 1, Zone: zone, Index: 1}})
		m.IncScheduledEvent(event)
		m.SetBuildInfo(version)
		m.SetCheckStatus(check.Name(event), check.Status(queue))
		m.DeclareAction(policy.Action(event))
		m.IncRemediation(policy.Action(iface), policy.Result(queue))
		m.IncVMPause(freeze.Source(zone))
		m.ObservePauseToVerified(freeze.Outcome(zone), time.Second)
		m.ObserveCheckDuration(check.Name(iface), time.Millisecond)
		if _, err := m.Registry().Gather(); err != nil {
			t.Fatalf("gather: %v", err)
		}
	})
}
