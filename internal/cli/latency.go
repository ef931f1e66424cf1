package cli

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/latency"
)

var errFixtureKernel = errors.New("fixture roots (--path.sysfs is not /sys): the kernel's softirqs are not the fixture's")

type latencyReport struct{ latency.Report }

func (r latencyReport) verdict() check.Verdict       { return r.Verdict }
func (r latencyReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// checkLatency: the daemon's result when fresh, else the programs attached
// for one --window (root: CAP_BPF and CAP_PERFMON); where they cannot be,
// unknown with the reason.
func checkLatency(ctx context.Context, e checkEnv) reporter {
	if raw, v, ok := freshReport(e, latency.Name); ok {
		return rawReport{raw, v}
	}
	cfg := latency.ConfigFrom(e.cfg)
	if !e.h.Live() {
		return latencyReport{latency.Unavailable(errFixtureKernel, cfg)}
	}
	p, err := latency.Open()
	if err != nil {
		return latencyReport{latency.Unavailable(err, cfg)}
	}
	defer p.Close()
	stats, err := latency.Measure(ctx, p, e.window)
	if err != nil {
		return latencyReport{latency.Unavailable(err, cfg)}
	}
	return latencyReport{latency.Judge(stats, e.window, cfg)}
}
