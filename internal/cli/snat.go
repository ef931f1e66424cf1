package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/snat"
)

func init() { extraCommands["top"] = runTop }

type snatReport struct{ *snat.Report }

func (r snatReport) verdict() check.Verdict       { return r.Verdict }
func (r snatReport) MarshalJSON() ([]byte, error) { return json.Marshal(r.Report) }

// snatConfig is the check's configuration. The config file has no `snat`
// section yet: the defaults of DESIGN.md apply.
func snatConfig(config.Config) snat.Config { return snat.DefaultConfig() }

// errFixtureRoots: the conntrack table is the running kernel's, never a file.
var errFixtureRoots = errors.New("no conntrack table under fixture roots (--path.sysfs is not /sys)")

func snatScanner(h *hostfs.FS, limit int) snat.Scanner {
	dump := snat.Dumper(conntrack.Dump)
	if !h.Live() {
		dump = func(context.Context, conntrack.Filter, func(*conntrack.Flow)) (conntrack.Stats, error) {
			return conntrack.Stats{}, errFixtureRoots
		}
	}
	return snat.Scanner{Dump: dump, Resolver: snat.NewResolver(h, time.Now), Limit: limit}
}

func checkSNAT(ctx context.Context, h *hostfs.FS, cfg config.Config, _ time.Duration) reporter {
	return snatReport{snatScanner(h, snat.DefaultLimit).Run(ctx, snatConfig(cfg))}
}

const topUsage = "usage: nodekeeper top [snat] [--by pod|destination] [--output text|json] [--limit 10] [--interval 2s]"

// runTop is `nodekeeper top snat`: who spends the SNAT ports now. On a
// terminal it redraws every --interval until interrupted; otherwise (a
// pipe, a file) and for JSON it prints once.
func runTop(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("top", env)
	var g globals
	g.register(fs)
	by := fs.String("by", "pod", "pod (sources) or destination")
	output := fs.String("output", "text", "text or json")
	limit := fs.Int("limit", snat.DefaultLimit, "rows shown")
	interval := fs.Duration("interval", 2*time.Second, "redraw interval on a terminal")
	pos, err := parse(fs, args)
	if err != nil || len(pos) > 1 || (len(pos) == 1 && check.Name(pos[0]) != snat.CheckName) ||
		(*by != "pod" && *by != "destination") || (*output != "text" && *output != "json") ||
		*limit <= 0 || *interval <= 0 {
		fmt.Fprintln(env.Stderr, topUsage)
		return 2
	}
	cfg, err := loadConfig(g.configFile)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper: config:", err, "(showing with the defaults)")
		cfg = config.Default()
	}
	h, err := hostfs.New(g.paths)
	if err != nil {
		fmt.Fprintln(env.Stderr, "nodekeeper:", err)
		return 1
	}
	sc := snatScanner(h, *limit)
	scfg := snatConfig(cfg)
	if *output == "json" || !env.IsTerminal {
		r := sc.Run(ctx, scfg)
		if *output == "json" {
			enc := json.NewEncoder(env.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				return 1
			}
		} else {
			renderTop(env.Stdout, r, *by)
		}
		if r.Status == check.Unknown {
			return 1
		}
		return 0
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		r := sc.Run(ctx, scfg)
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J") // home, clear: redraw in place like top
		renderTop(&b, r, *by)
		io.WriteString(env.Stdout, b.String())
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

// topWidth is the widest line top prints.
const topWidth = 80

// renderTop writes the table a person reads during an incident.
func renderTop(w io.Writer, r *snat.Report, by string) {
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		if utf8.RuneCountInString(s) > topWidth {
			s = string([]rune(s)[:topWidth-1]) + "…"
		}
		fmt.Fprintln(w, strings.TrimRight(s, " "))
	}
	line("%s: %s", r.Status, r.Message)
	if r.Status == "unknown" {
		return
	}
	line("budget %d (%s) · demand %d (tcp %d, udp %d) · public %d of %d flows",
		r.AllocatedPorts, r.AllocatedSource, r.DemandPorts, r.DemandByProto["tcp"], r.DemandByProto["udp"],
		r.PublicFlows, r.ConntrackEntries)
	line("")
	if by == "destination" {
		line("%6s  %5s  %-5s  %-39s  %s", "FLOWS", "SHARE", "PROTO", "DESTINATION", "PORT")
		for _, d := range r.Destinations {
			port := fmt.Sprint(d.Port)
			if d.Proto == "udp" {
				port = "*"
			}
			line("%6d  %4.0f%%  %-5s  %-39s  %s", d.Flows, 100*float64(d.Flows)/float64(r.AllocatedPorts),
				d.Proto, d.IP, port)
		}
		if len(r.Destinations) == 0 {
			line("(no public flows)")
		}
		return
	}
	line("%6s  %-32s  %-7s  %s", "FLOWS", "SOURCE", "PID", "TOP DESTINATION")
	for _, s := range r.Sources {
		name, pid, top := snat.SourceName(s), "-", "-"
		if s.Kind != snat.KindPod {
			name = s.Kind + " " + s.IP.String()
		}
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
		}
		if s.TopDestination != nil {
			top = snat.DestString(*s.TopDestination)
		}
		line("%6d  %-32s  %-7s  %s", s.Flows, cut(name, 32), pid, top)
	}
	if len(r.Sources) == 0 {
		line("(no public flows)")
	}
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
