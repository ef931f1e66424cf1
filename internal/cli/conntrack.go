package cli

import (
	"context"
	"encoding/json"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
)

type conntrackReport struct{ *ctdrops.Report }

func (r conntrackReport) verdict() check.Verdict       { return r.Verdict }
func (r conntrackReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// checkConntrack: the daemon's result when fresh, else two samples --window
// apart (the kernel log followed during the window where it can be read).
func checkConntrack(ctx context.Context, e checkEnv) reporter {
	if raw, v, ok := freshReport(e, ctdrops.CheckName); ok {
		return rawReport{raw, v}
	}
	host := ctdrops.NewHost(e.h, e.clk.Now)
	if e.h.Live() {
		if k, err := ctdrops.OpenKmsg("/dev/kmsg"); err == nil {
			defer k.Close()
			host.Kmsg = k
		}
	}
	return conntrackReport{ctdrops.CheckOnce(ctx, host, ctdrops.ConfigFrom(e.cfg), e.window, e.clk)}
}
