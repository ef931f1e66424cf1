package dnsprobe

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// FuzzAnswer: whatever bytes come back as the answer (with the query's id,
// as miekg/dns's client would accept them), the probe never panics, its
// line fits, and only a SERVFAIL is a problem: an answer that is not DNS
// is never a false problem of the cluster DNS.
func FuzzAnswer(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
	ok := new(dns.Msg)
	ok.SetReply(q)
	rr, _ := dns.NewRR("kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.1")
	ok.Answer = append(ok.Answer, rr)
	for _, m := range []*dns.Msg{ok, new(dns.Msg).SetRcode(q, dns.RcodeServerFailure), new(dns.Msg).SetRcode(q, dns.RcodeNameError)} {
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0x0b, 'k'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		b = append([]byte(nil), b...)
		p := Prober{Exchange: func(_ context.Context, m *dns.Msg, network string, _ netip.AddrPort, _ time.Duration) (*dns.Msg, error) {
			if len(b) >= 2 {
				b[0], b[1] = byte(m.Id>>8), byte(m.Id)
			}
			if len(b) < 12 {
				return nil, dns.ErrShortRead
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				return nil, err
			}
			if network == "tcp" {
				r.Truncated = false // a TCP answer is never truncated again
			}
			return r, nil
		}}
		cfg := DefaultConfig()
		res := p.Probe(context.Background(), cfg, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53")})
		r := Judge(cfg, res)
		if len(r.Message) > check.MaxMessage || r.Message == "" {
			t.Errorf("message %q", r.Message)
		}
		if r.Status == check.Problem && r.Rcode != "SERVFAIL" {
			t.Errorf("a problem from an answer with rcode %q: %+v", r.Rcode, *r)
		}
		if r.Attempts < 1 || r.Attempts > 2*Attempts || r.Timeouts != 0 {
			t.Errorf("attempts %d timeouts %d", r.Attempts, r.Timeouts)
		}
	})
}
