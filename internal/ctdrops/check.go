package ctdrops

import (
	"context"

	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// CheckOnce is `nodekeeper check conntrack` without a fresh daemon result:
// two samples window apart, judged with cfg.
func CheckOnce(ctx context.Context, r Reader, cfg Config, window time.Duration, clk clock.Clock) *Report {
	a, err := r.Read(ctx)
	if err != nil {
		return Unavailable(err)
	}
	if err := clock.Sleep(ctx, clk, window); err != nil {
		return Unavailable(err)
	}
	b, err := r.Read(ctx)
	if err != nil {
		return Unavailable(err)
	}
	rep := Judge(cfg, a, b)
	rep.Message = check.Short(rep.Message)
	return rep
}
