package dnsprobe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Exchanger sends one query to server over network ("udp" or "tcp") and
// waits at most timeout for its answer (Exchange, or a fake).
type Exchanger func(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort, timeout time.Duration) (*dns.Msg, error)

// Exchange is the Exchanger of the running host: miekg/dns's client, a new
// socket (a new source port) for each query, as glibc's resolver with
// single-request-reopen and musl's make them.
func Exchange(ctx context.Context, m *dns.Msg, network string, server netip.AddrPort, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.ExchangeContext(ctx, m, server.String())
	return r, err
}

// Attempts is how many times each server is asked over UDP before the probe
// gives up: glibc's default (options attempts:2), so a probe that times out
// once and then answers shows what a pod waits for.
const Attempts = 2

// outcome is what one query came back with. Among failures other than a
// timeout the later constant is the one the report names: a refused port
// (a problem) before bytes that are not DNS, before other errors.
type outcome int

const (
	answered outcome = iota // a DNS message, any rcode
	timedOut                // no answer within the timeout
	failed                  // anything else (no route, no socket)
	garbage                 // an answer that is not a DNS message for our query
	refused                 // ICMP port unreachable: no server at the address
	blocked                 // EPERM on send: a local firewall (the unit's IPAddressDeny=)
	canceled                // the caller's context ended
)

// classify sorts an exchange's error.
func classify(ctx context.Context, err error) outcome {
	var ne net.Error
	switch {
	case err == nil:
		return answered
	case ctx.Err() != nil:
		return canceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return timedOut
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return blocked
	case errors.As(err, new(*net.OpError)), errors.As(err, new(syscall.Errno)):
		return failed
	}
	// miekg/dns's unpack errors (overflow, short read, bad rdata), a
	// mismatched id over TCP: the bytes that came back are not an answer.
	return garbage
}

// Prober resolves the probe name the way a pod's resolver does.
type Prober struct {
	Exchange Exchanger        // Exchange when nil
	Now      func() time.Time // time.Now when nil
}

// Probe asks servers for cfg.ProbeName (type A, recursion desired): each
// server in turn, Attempts rounds, until one answers with a DNS message; an
// answer with the TC bit is asked again over TCP and reported truncated.
func (p Prober) Probe(ctx context.Context, cfg Config, servers []netip.AddrPort) *Result {
	ex, now := p.Exchange, p.Now
	if ex == nil {
		ex = Exchange
	}
	if now == nil {
		now = time.Now
	}
	res := &Result{Name: dns.Fqdn(cfg.ProbeName)}
	if len(servers) == 0 {
		return res
	}
	res.Server = servers[0]
	start := now()
	defer func() { res.Took = now().Sub(start) }()
	q := new(dns.Msg)
	q.SetQuestion(res.Name, dns.TypeA)
	q.RecursionDesired = true
	for range Attempts {
		for _, srv := range servers {
			t0 := now()
			res.Attempts++
			r, err := ex(ctx, q.Copy(), "udp", srv, cfg.Timeout)
			o := classify(ctx, err)
			if o == answered && r.Truncated {
				res.Server, res.Truncated = srv, true
				res.Attempts++
				r, err = ex(ctx, q.Copy(), "tcp", srv, cfg.Timeout)
				o = classify(ctx, err)
			}
			if o == answered && !matches(q, r) {
				o, err = garbage, errors.New("the answer is for another question")
			}
			switch o {
			case answered:
				res.Server, res.Answered = srv, true
				res.Rcode = r.Rcode
				res.Answer = now().Sub(t0)
				for _, rr := range r.Answer {
					if rr.Header().Rrtype == dns.TypeA {
						res.Answers++
					}
				}
				return res
			case canceled:
				res.Err = ctx.Err()
				return res
			case blocked:
				// Every query would be dropped alike: say so now.
				res.Server, res.last, res.lastErr = srv, o, err
				return res
			case timedOut:
				res.Timeouts++
				res.Server = srv
			default:
				if o >= res.last {
					res.last, res.lastErr, res.lastServer = o, err, srv
				}
			}
		}
	}
	// The report names the server that timed out (the problem) before
	// one that failed otherwise.
	if res.Timeouts == 0 {
		res.Server = res.lastServer
	}
	return res
}

// matches: r answers q (the client checked the id; a server that echoes
// another question has answered something else).
func matches(q, r *dns.Msg) bool {
	if r == nil || !r.Response {
		return false
	}
	if len(r.Question) == 0 {
		// Some servers leave the question out of SERVFAIL and REFUSED.
		return r.Rcode != dns.RcodeSuccess
	}
	a, b := q.Question[0], r.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && dns.CanonicalName(a.Name) == dns.CanonicalName(b.Name)
}

// Result is one probe's raw outcome, before the judgement.
type Result struct {
	Name      string         // the name asked, fully qualified
	Server    netip.AddrPort // the server that answered (or the last one that failed)
	Answered  bool           // a DNS message came back
	Rcode     int            // its rcode
	Answers   int            // A records in it
	Answer    time.Duration  // the answering attempt: query to answer (UDP plus TCP when truncated)
	Truncated bool           // the UDP answer had TC set and was asked again over TCP
	Timeouts  int            // queries that went unanswered within the timeout
	Attempts  int            // queries sent, UDP and TCP
	Took      time.Duration  // the whole probe, timeouts included: what a client waited
	Err       error          // the caller's context ended

	last       outcome // the failure other than a timeout the report names (see outcome)
	lastErr    error
	lastServer netip.AddrPort
}
