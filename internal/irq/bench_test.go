package irq

import (
	"context"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

// Large192 is a 192-CPU Azure-style node with 1 000 IRQs: a netvsc NIC whose
// mlx5 VF has 64 queue IRQs, plus 935 other MSI vectors.
func large192(skew bool) hostfixture.Host {
	aff := func(i int) (cpuset.Set, cpuset.Set) { c := cpuset.New(3 * i); return c, c }
	if skew {
		aff = skewed(4, 5)
	}
	h := azure(192, 64, aff, "mlx5_core")
	h.OtherIRQs = 1000 - 65
	return h
}

// BenchmarkCheckIRQ is one full check (discover + read + verdict + plan) on
// the 192-CPU / 1 000-IRQ / 64-queue fixture.
func BenchmarkCheckIRQ(b *testing.B) {
	for _, skew := range []bool{false, true} {
		name := "healthy"
		if skew {
			name = "skewed"
		}
		b.Run(name, func(b *testing.B) {
			p, err := large192(skew).Build(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			h, _ := hostfs.New(p)
			c := NewChecker(h, SysfsLinks{FS: h}, defaultOpts, time.Now)
			want := check.OK
			if skew {
				want = check.Problem
			}
			if rep := c.Run(context.Background()); rep.Status != want || len(rep.NICIRQs) != 64 {
				b.Fatalf("%s %q %d", rep.Status, rep.Message, len(rep.NICIRQs))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c.Run(context.Background())
			}
		})
	}
}
