package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/latency"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
)

// checkFunc runs one check read-only and returns its report (a struct that
// embeds check.Verdict, or a check.Verdict itself).
type checkFunc func(ctx context.Context, e checkEnv) reporter

// checkEnv is what a check reads: the host, the configuration (mapped to
// each package's own settings exactly as the daemon maps it), the sampling
// window for rate-based checks without a fresh daemon result, and the clock.
type checkEnv struct {
	h      *hostfs.FS
	cfg    config.Config
	window time.Duration
	clk    clock.Clock
}

type reporter interface{ verdict() check.Verdict }

type irqReport struct{ *irq.Report }

func (r irqReport) verdict() check.Verdict          { return r.Verdict }
func (r irqReport) MarshalJSON() ([]byte, error)    { return json.Marshal(r.Report) }
func (v plainVerdict) verdict() check.Verdict       { return check.Verdict(v) }
func (v plainVerdict) MarshalJSON() ([]byte, error) { return json.Marshal(check.Verdict(v)) }

type plainVerdict check.Verdict

// checks are the checks `check all` runs, in order.
var checks = []struct {
	name check.Name
	run  checkFunc
}{
	{irq.Name, checkIRQ},
	{kubelet.Name, checkKubelet},
	{compaction.CheckName, checkCompaction},
	{symptoms.CheckName, checkSoftirq},
	{snat.CheckName, func(ctx context.Context, e checkEnv) reporter { return checkSNAT(ctx, e.h, e.cfg, e.window) }},
	{dnsprobe.CheckName, checkDNS},
	{ctdrops.CheckName, checkConntrack},
	{latency.Name, checkLatency},
}

func checkIRQ(ctx context.Context, e checkEnv) reporter {
	return irqReport{irq.NewChecker(e.h, irq.Links(e.h), irq.OptionsFrom(e.cfg), e.clk.Now).Run(ctx)}
}

type allReport struct {
	check.Verdict
	Checks []reporter `json:"checks"`
}

func runCheck(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("check", env)
	var g globals
	g.register(fs)
	output := fs.String("output", "text", "text (one line, ≤ 80 bytes) or json")
	window := fs.Duration("window", time.Second, "sampling window for rate-based checks when the daemon's state is not fresh")
	pos, err := parse(fs, args)
	if err != nil {
		return 2
	}
	name := check.Name("all")
	if len(pos) > 0 {
		name = check.Name(pos[0])
	}
	names := []check.Name{"all"}
	for _, c := range checks {
		names = append(names, c.name)
	}
	if len(pos) > 1 || !slices.Contains(names, name) {
		fmt.Fprintf(env.Stderr, "usage: nodekeeper check %v [--output text|json]\n", names)
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(env.Stderr, "--output %q: want text or json\n", *output)
		return 2
	}
	rep := func() reporter {
		unknown := func(msg string) reporter {
			return plainVerdict{Check: name, Status: check.Unknown, Message: check.Short(msg)}
		}
		cfg, err := loadConfig(g.configFile)
		if err != nil {
			fmt.Fprintln(env.Stderr, "nodekeeper: config:", err)
			return unknown("bad config: " + err.Error())
		}
		h, err := hostfs.New(g.paths)
		if err != nil {
			return unknown("cannot read host: " + err.Error())
		}
		e := checkEnv{h: h, cfg: cfg, window: *window, clk: env.clock()}
		if name != "all" {
			for _, c := range checks {
				if c.name == name {
					return c.run(ctx, e)
				}
			}
		}
		all := allReport{Verdict: check.Verdict{Check: "all"}}
		var statuses []check.Status
		var firstBad string
		for _, c := range checks {
			if !inAll(c.name, e) {
				continue
			}
			r := c.run(ctx, e)
			all.Checks = append(all.Checks, r)
			v := r.verdict()
			statuses = append(statuses, v.Status)
			if v.Status != check.OK && firstBad == "" {
				firstBad = string(v.Check) + ": " + v.Message
			}
		}
		all.Status = check.Combine(statuses...)
		if all.Status == check.OK {
			all.Message = fmt.Sprintf("all %d checks ok", len(all.Checks))
		} else {
			all.Message = check.Short(firstBad)
		}
		return allReportJSON{all}
	}()
	v := rep.verdict()
	if *output == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(env.Stderr, "nodekeeper:", err)
			return 2
		}
	} else {
		fmt.Fprintln(env.Stdout, check.Short(v.Message))
	}
	return v.Status.ExitCode()
}

type allReportJSON struct{ allReport }

func (a allReportJSON) verdict() check.Verdict { return a.Verdict }
