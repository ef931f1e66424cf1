package dnsprobe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Report is `check dns`'s answer (DESIGN.md "Outbound path").
type Report struct {
	check.Verdict
	Server    string   `json:"server"`  // the server that answered, or the one that failed ("" when none is known)
	Servers   []string `json:"servers"` // every server asked, in order
	Source    string   `json:"source"`  // where they came from: "dns.servers" or kubelet's file
	Name      string   `json:"name"`    // the name resolved
	Rcode     string   `json:"rcode"`   // NOERROR, NXDOMAIN, SERVFAIL… ("" without an answer)
	AnswerMS  float64  `json:"answer_ms"`
	Answers   int      `json:"answers"` // A records
	Truncated bool     `json:"truncated"`
	Timeouts  int      `json:"timeouts"`
	Attempts  int      `json:"attempts"`
	Result    string   `json:"result"` // the nodekeeper_dns_probe_seconds label

	Took time.Duration `json:"-"` // the whole probe, for the histogram
}

// Values of Report.Result, the result label of nodekeeper_dns_probe_seconds:
// a fixed set.
const (
	ResultOK        = "ok"        // an answer (NOERROR) at the first try
	ResultTruncated = "truncated" // TC over UDP, answered over TCP
	ResultNXDomain  = "nxdomain"  // the server answered that the name does not exist
	ResultServFail  = "servfail"
	ResultTimeout   = "timeout" // a query went unanswered (answered later or never)
	ResultRefused   = "refused" // nothing listens at the address
	ResultError     = "error"   // garbage, another rcode, blocked, no route
	ResultNone      = ""        // nothing was asked (no server known)
)

// Results are every value of the result label.
var Results = []string{ResultOK, ResultTruncated, ResultNXDomain, ResultServFail, ResultTimeout, ResultRefused, ResultError}

// Checker runs the check on a host: finds the servers and probes them.
type Checker struct {
	FS     *hostfs.FS
	Prober Prober
}

// Run finds the servers (dns.servers, else kubelet's clusterDNS) and judges
// one probe of them.
func (c Checker) Run(ctx context.Context, cfg Config) *Report {
	servers, source := cfg.Servers, "dns.servers"
	if len(servers) == 0 {
		var err error
		servers, source, err = ClusterDNS(c.FS)
		if err != nil {
			return unknown(cfg, "cannot read kubelet's clusterDNS: "+err.Error())
		}
		if len(servers) == 0 {
			return unknown(cfg, "no DNS server known: kubelet sets no clusterDNS; set dns.servers")
		}
	}
	r := Judge(cfg, c.Prober.Probe(ctx, cfg, servers))
	r.Source = source
	for _, s := range servers {
		r.Servers = append(r.Servers, ServerString(s))
	}
	return r
}

func unknown(cfg Config, reason string) *Report {
	return &Report{Verdict: check.Verdict{Check: CheckName, Status: check.Unknown, Message: check.Short(reason)},
		Servers: []string{}, Name: dns.Fqdn(cfg.ProbeName)}
}

// Judge is the pure verdict of one probe: a problem when a query timed out
// (answered later or never: the 5 s DNS timeouts pods see), when the server
// answered SERVFAIL, or when nothing listens at its address; unknown when no
// server was asked, when the answer was not DNS or the probe could not send;
// else ok, NXDOMAIN included (the server answers: the name is wrong).
func Judge(cfg Config, res *Result) *Report {
	r := &Report{Verdict: check.Verdict{Check: CheckName, Status: check.OK}, Servers: []string{}, Name: res.Name,
		Truncated: res.Truncated, Timeouts: res.Timeouts, Attempts: res.Attempts, Took: res.Took}
	if res.Attempts == 0 {
		r.Status, r.Message = check.Unknown, "no DNS server known: kubelet sets no clusterDNS; set dns.servers"
		return r
	}
	srv := ServerString(res.Server)
	r.Server = srv
	if res.Answered {
		r.Rcode = dns.RcodeToString[res.Rcode]
		if r.Rcode == "" {
			r.Rcode = fmt.Sprintf("RCODE%d", res.Rcode)
		}
		r.AnswerMS = float64(res.Answer.Microseconds()) / 1000
		r.Answers = res.Answers
	}
	name := strings.TrimSuffix(res.Name, ".")
	in := " in " + ms(res.Answer)
	tc := ""
	if res.Truncated {
		tc = " (truncated: over TCP)"
	}
	switch {
	case res.Err != nil:
		r.Status, r.Result = check.Unknown, ResultNone
		r.Message = "DNS probe of " + srv + " interrupted: " + res.Err.Error()
	case res.Timeouts > 0:
		r.Status, r.Result = check.Problem, ResultTimeout
		if res.Answered {
			r.Message = fmt.Sprintf("DNS %s: %d of %d queries timed out (%s); then %s%s", srv, res.Timeouts,
				res.Attempts, cfg.Timeout, r.Rcode, in)
		} else {
			r.Message = fmt.Sprintf("DNS %s: no answer to %d queries (%s each)%s", srv, res.Attempts, cfg.Timeout, tc)
		}
	case res.Answered && res.Rcode == dns.RcodeServerFailure:
		r.Status, r.Result = check.Problem, ResultServFail
		r.Message = fmt.Sprintf("DNS %s: SERVFAIL for %s%s", srv, name, tc)
	case res.Answered && res.Rcode == dns.RcodeNameError:
		r.Result = ResultNXDomain
		r.Message = fmt.Sprintf("DNS %s: NXDOMAIN%s (is dns.probeName right?)", srv, in)
	case res.Answered && res.Rcode == dns.RcodeSuccess && res.Truncated:
		r.Result = ResultTruncated
		r.Message = fmt.Sprintf("DNS %s: truncated over UDP, answered over TCP%s", srv, in)
	case res.Answered && res.Rcode == dns.RcodeSuccess:
		r.Result = ResultOK
		r.Message = fmt.Sprintf("DNS %s: %d answers%s for %s", srv, res.Answers, in, name)
	case res.Answered:
		r.Status, r.Result = check.Unknown, ResultError
		r.Message = fmt.Sprintf("DNS %s answered %s for %s", srv, r.Rcode, name)
	case res.last == refused:
		r.Status, r.Result = check.Problem, ResultRefused
		r.Message = fmt.Sprintf("DNS %s: connection refused: no DNS server at the address%s", srv, tc)
	case res.last == blocked:
		r.Status, r.Result = check.Unknown, ResultError
		r.Message = fmt.Sprintf("DNS %s: sending blocked (unit IPAddressAllow=? see nodekeeper(8))", srv)
	case res.last == garbage:
		r.Status, r.Result = check.Unknown, ResultError
		r.Message = fmt.Sprintf("DNS %s: answer is not DNS: %v", srv, res.lastErr)
	default:
		r.Status, r.Result = check.Unknown, ResultError
		r.Message = fmt.Sprintf("DNS %s: cannot ask: %v", srv, res.lastErr)
	}
	r.Message = check.Short(r.Message)
	return r
}

// ms shows a duration in milliseconds, to a tenth under 10 ms.
func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
