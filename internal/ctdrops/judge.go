package ctdrops

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
)

// Rates are per-second rates of the counters over a window.
type Rates struct {
	InsertFailed    float64 `json:"insert_failed"`
	Drop            float64 `json:"drop"`
	EarlyDrop       float64 `json:"early_drop"`
	ClashResolve    float64 `json:"clash_resolve"`
	ChainTooLong    float64 `json:"chaintoolong"`
	UDPRcvbufErrors float64 `json:"udp_rcvbuf_errors"` // the host's network namespace
}

// DNSPod is one cluster DNS pod in the report.
type DNSPod struct {
	Name            string  `json:"name"`
	PID             int     `json:"pid"`
	UDPRcvbufErrors float64 `json:"udp_rcvbuf_errors"` // per second over the window
	UDPInErrors     float64 `json:"udp_in_errors"`
}

// Report is `check conntrack`'s answer (DESIGN.md "Outbound path").
type Report struct {
	check.Verdict
	Source        string   `json:"source"` // netlink, procfs, or unavailable
	Entries       uint64   `json:"entries"`
	Max           uint64   `json:"max"` // 0: unknown
	Fill          float64  `json:"fill"`
	WindowSeconds float64  `json:"window_seconds"`
	Rates         Rates    `json:"rates"`
	DNSPods       []DNSPod `json:"dns_pods"`
	// TableFullLines are the kernel's "table full, dropping packet" lines
	// in the window (-1: the kernel log is not readable).
	TableFullLines int64 `json:"table_full_lines"`
	// Resets says which counters went backwards in the window (a network
	// namespace or a CPU's counters restarted): they count 0, not a drop.
	Resets []string `json:"resets,omitempty"`
}

// delta is b-a, or 0 and a reset when the counter went backwards.
func delta(a, b uint64, name string, resets map[string]bool) float64 {
	if b < a {
		resets[name] = true
		return 0
	}
	return float64(b - a)
}

// Judge compares two samples of the same host (prev before cur) and judges
// them with cfg. Counters are compared CPU by CPU, over the CPUs present in
// both samples only, so a CPU that comes or goes adds nothing.
func Judge(cfg Config, prev, cur Sample) *Report {
	r := &Report{Verdict: check.Verdict{Check: CheckName}, Source: cur.Source, Entries: cur.Entries, Max: cur.Max,
		TableFullLines: -1, DNSPods: []DNSPod{}}
	if cur.Max > 0 {
		r.Fill = math.Round(float64(cur.Entries)/float64(cur.Max)*10000) / 10000
	}
	secs := cur.At.Sub(prev.At).Seconds()
	if secs <= 0 {
		r.Status, r.Message = check.Unknown, "no window to compute rates over"
		return r
	}
	r.WindowSeconds = math.Round(secs*1000) / 1000
	resets := map[string]bool{}
	before := map[int]conntrack.Counters{}
	for _, c := range prev.CPUs {
		before[c.CPU] = c.Counters
	}
	var d struct{ insertFailed, drop, earlyDrop, clash, chain float64 }
	for _, c := range cur.CPUs {
		a, ok := before[c.CPU]
		if !ok {
			continue
		}
		d.insertFailed += delta(a.InsertFailed, c.InsertFailed, "insert_failed", resets)
		d.drop += delta(a.Drop, c.Drop, "drop", resets)
		d.earlyDrop += delta(a.EarlyDrop, c.EarlyDrop, "early_drop", resets)
		d.clash += delta(a.ClashResolve, c.ClashResolve, "clash_resolve", resets)
		d.chain += delta(a.ChainTooLong, c.ChainTooLong, "chaintoolong", resets)
	}
	rate := func(x float64) float64 { return math.Round(x/secs*1000) / 1000 }
	r.Rates = Rates{InsertFailed: rate(d.insertFailed), Drop: rate(d.drop), EarlyDrop: rate(d.earlyDrop),
		ClashResolve: rate(d.clash), ChainTooLong: rate(d.chain)}
	if prev.HasHostUDP && cur.HasHostUDP {
		r.Rates.UDPRcvbufErrors = rate(delta(prev.HostUDP.RcvbufErrors, cur.HostUDP.RcvbufErrors, "udp_rcvbuf_errors", resets))
	}
	podsBefore := map[int]PodUDP{}
	for _, p := range prev.DNS {
		podsBefore[p.PID] = p
	}
	var dnsDropping []string
	for _, p := range cur.DNS {
		dp := DNSPod{Name: p.Name, PID: p.PID}
		if a, ok := podsBefore[p.PID]; ok {
			dp.UDPRcvbufErrors = rate(delta(a.RcvbufErrors, p.RcvbufErrors, "dns_udp_rcvbuf_errors", resets))
			dp.UDPInErrors = rate(delta(a.InErrors, p.InErrors, "dns_udp_in_errors", resets))
			if dp.UDPRcvbufErrors > 0 || dp.UDPInErrors > 0 {
				dnsDropping = append(dnsDropping, p.Name)
			}
		}
		r.DNSPods = append(r.DNSPods, dp)
	}
	if prev.TableFull >= 0 && cur.TableFull >= 0 {
		r.TableFullLines = max(cur.TableFull-prev.TableFull, 0)
	}
	for k := range resets {
		r.Resets = append(r.Resets, k)
	}
	slices.Sort(r.Resets)

	var why []string
	if cur.Max > 0 && r.Fill >= cfg.FillProblem {
		why = append(why, fmt.Sprintf("table %.0f%% full (%d of %d)", r.Fill*100, cur.Entries, cur.Max))
	}
	if r.Rates.Drop > 0 || r.Rates.EarlyDrop > 0 {
		why = append(why, fmt.Sprintf("dropping %s/s (early_drop %s/s)", num(r.Rates.Drop), num(r.Rates.EarlyDrop)))
	}
	if r.TableFullLines > 0 {
		why = append(why, fmt.Sprintf("kernel said table full %d×", r.TableFullLines))
	}
	if r.Rates.InsertFailed > 0 {
		why = append(why, fmt.Sprintf("insert_failed %s/s", num(r.Rates.InsertFailed)))
	}
	if len(dnsDropping) > 0 {
		why = append(why, "DNS pod drops UDP: "+strings.Join(dnsDropping, ","))
	}
	if len(why) > 0 {
		r.Status, r.Message = check.Problem, "conntrack: "+strings.Join(why, "; ")
		return r
	}
	r.Status = check.OK
	switch {
	case cur.Max > 0:
		r.Message = fmt.Sprintf("conntrack %.0f%% full, no drops in %s", r.Fill*100, fmtWindow(secs))
	default:
		r.Message = fmt.Sprintf("conntrack: %d entries, no drops in %s", cur.Entries, fmtWindow(secs))
	}
	return r
}

// Unavailable is the report of a host whose counters cannot be read.
func Unavailable(err error) *Report {
	return &Report{Verdict: check.Verdict{Check: CheckName, Status: check.Unknown, Message: check.Short(err.Error())},
		Source: "unavailable", TableFullLines: -1, DNSPods: []DNSPod{}}
}

func num(x float64) string {
	if x >= 10 || x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2g", x)
}

func fmtWindow(secs float64) string {
	if secs < 1 {
		return fmt.Sprintf("%.1fs", secs)
	}
	return fmt.Sprintf("%.0fs", secs)
}
