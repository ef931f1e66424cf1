package daemon

import (
	"strings"
	"testing"
	"testing/synctest"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// TestNICNameNotUTF8 is the crash loop of a legal NIC name: the kernel
// allows "eth\xff0", and the daemon used to panic in the metrics setters
// before READY=1. It must start, judge the NIC, and show the name escaped.
func TestNICNameNotUTF8(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := hostfixture.Host{CPUs: 4, NICs: []hostfixture.NIC{{Name: "eth\xff0", Driver: "mlx5_core", Queues: 4, NUMANode: -1,
			Affinity: func(int) (cpuset.Set, cpuset.Set) { c := cpuset.New(3); return c, c }}}}
		r := newRig(t, host, nil, nil)
		r.start()
		_, _, status := r.notify.get()
		if !utf8.ValidString(status) || !strings.Contains(status, `eth\xff0`) {
			t.Fatalf("STATUS= %q: want the name escaped", status)
		}
		mfs, err := r.metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == `eth\xff0` {
						found = true
					}
				}
			}
		}
		if !found {
			t.Fatal(`no series labelled interface="eth\xff0"`)
		}
	})
}
