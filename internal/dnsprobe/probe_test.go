package dnsprobe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

// testTimeout keeps the timeout cases short; loopback answers in well
// under a millisecond.
const testTimeout = 300 * time.Millisecond

func testConfig() Config {
	c := DefaultConfig()
	c.Timeout = testTimeout
	return c
}

// server is an in-process DNS server on loopback: UDP and TCP on one port.
type server struct {
	addr  netip.AddrPort
	udp   atomic.Int64 // queries seen over UDP
	tcp   atomic.Int64
	inUDP func(n int64, w dns.ResponseWriter, q *dns.Msg) // nil: answer
	inTCP func(w dns.ResponseWriter, q *dns.Msg)
}

// answer is a healthy cluster DNS's reply: one A record.
func answer(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 5 IN A 10.0.0.1")
	r.Answer = append(r.Answer, rr)
	_ = w.WriteMsg(r)
}

func rcode(code int) func(int64, dns.ResponseWriter, *dns.Msg) {
	return func(_ int64, w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetRcode(q, code)
		_ = w.WriteMsg(r)
	}
}

func startServer(t testing.TB, s *server) *server {
	t.Helper()
	var pc net.PacketConn
	var l net.Listener
	for range 10 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no loopback port free for both UDP and TCP")
	}
	s.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		if w.LocalAddr().Network() == "tcp" {
			s.tcp.Add(1)
			if s.inTCP != nil {
				s.inTCP(w, q)
				return
			}
			answer(w, q)
			return
		}
		n := s.udp.Add(1)
		if s.inUDP != nil {
			s.inUDP(n, w, q)
			return
		}
		answer(w, q)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

// rawUDP is a loopback UDP socket that hands each query to reply (which
// may write anything back, or nothing).
func rawUDP(t *testing.T, reply func(q []byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if b := reply(append([]byte(nil), buf[:n]...)); b != nil {
				_, _ = pc.WriteTo(b, from)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func probe(t *testing.T, cfg Config, servers ...netip.AddrPort) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Judge(cfg, Prober{}.Probe(ctx, cfg, servers))
}

func TestProbeAnswers(t *testing.T) {
	cfg := testConfig()
	for _, tc := range []struct {
		name                   string
		inUDP                  func(int64, dns.ResponseWriter, *dns.Msg)
		status                 check.Status
		rcode, result, message string
		timeouts, attempts     int
		truncated              bool
	}{
		{name: "ok", status: check.OK, rcode: "NOERROR", result: ResultOK, attempts: 1,
			message: "1 answers in "},
		{name: "servfail", inUDP: rcode(dns.RcodeServerFailure), status: check.Problem, rcode: "SERVFAIL",
			result: ResultServFail, attempts: 1, message: "SERVFAIL for kubernetes.default.svc.cluster.local"},
		{name: "nxdomain", inUDP: rcode(dns.RcodeNameError), status: check.OK, rcode: "NXDOMAIN",
			result: ResultNXDomain, attempts: 1, message: "(is dns.probeName right?)"},
		{name: "refused rcode", inUDP: rcode(dns.RcodeRefused), status: check.Unknown, rcode: "REFUSED",
			result: ResultError, attempts: 1, message: "answered REFUSED"},
		{name: "truncated", status: check.OK, rcode: "NOERROR", result: ResultTruncated, attempts: 2, truncated: true,
			inUDP: func(_ int64, w dns.ResponseWriter, q *dns.Msg) {
				r := new(dns.Msg)
				r.SetReply(q)
				r.Truncated = true
				_ = w.WriteMsg(r)
			}, message: "truncated over UDP, answered over TCP in "},
		{name: "every second query dropped", status: check.Problem, rcode: "NOERROR", result: ResultTimeout,
			timeouts: 1, attempts: 2,
			inUDP: func(n int64, w dns.ResponseWriter, q *dns.Msg) {
				if n%2 == 1 {
					return // dropped: the conntrack insert race as a pod sees it
				}
				answer(w, q)
			}, message: "1 of 2 queries timed out (300ms); then NOERROR in "},
		{name: "never answers", inUDP: func(int64, dns.ResponseWriter, *dns.Msg) {}, status: check.Problem,
			result: ResultTimeout, timeouts: 2, attempts: 2, message: "no answer to 2 queries (300ms each)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, &server{inUDP: tc.inUDP})
			r := probe(t, cfg, s.addr)
			if r.Status != tc.status || r.Rcode != tc.rcode || r.Result != tc.result || r.Timeouts != tc.timeouts ||
				r.Attempts != tc.attempts || r.Truncated != tc.truncated || !strings.Contains(r.Message, tc.message) {
				t.Errorf("report %+v\nwant status %s rcode %q result %q timeouts %d attempts %d truncated %v message ~%q",
					*r, tc.status, tc.rcode, tc.result, tc.timeouts, tc.attempts, tc.truncated, tc.message)
			}
			if r.Server != ServerString(s.addr) || r.Name != "kubernetes.default.svc.cluster.local." {
				t.Errorf("server %q name %q", r.Server, r.Name)
			}
			if r.Rcode != "" && (r.AnswerMS <= 0 || r.AnswerMS > float64(testTimeout.Milliseconds())) {
				t.Errorf("answer_ms %v: want the time of the answering query", r.AnswerMS)
			}
			if len(r.Message) > check.MaxMessage {
				t.Errorf("message %d bytes: %q", len(r.Message), r.Message)
			}
			if tc.truncated && s.tcp.Load() != 1 {
				t.Errorf("%d TCP queries after TC, want 1", s.tcp.Load())
			}
		})
	}
}

// TC over UDP and then no answer over TCP either: the client that honours
// TC waits in vain.
func TestTruncatedThenTCPTimesOut(t *testing.T) {
	s := startServer(t, &server{
		inUDP: func(_ int64, w dns.ResponseWriter, q *dns.Msg) {
			r := new(dns.Msg)
			r.SetReply(q)
			r.Truncated = true
			_ = w.WriteMsg(r)
		},
		inTCP: func(dns.ResponseWriter, *dns.Msg) { time.Sleep(2 * testTimeout) },
	})
	r := probe(t, testConfig(), s.addr)
	if r.Status != check.Problem || !r.Truncated || r.Timeouts != 2 || r.Result != ResultTimeout {
		t.Errorf("TC then a silent TCP: %+v; want a problem, truncated, 2 timeouts", *r)
	}
}

func TestGarbageIsUnknownNotProblem(t *testing.T) {
	for name, reply := range map[string]func(q []byte) []byte{
		// The query's id and a response header, then a question that
		// runs off the end of the packet.
		"malformed": func(q []byte) []byte {
			if len(q) < 2 {
				return nil
			}
			return []byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0x0b, 'k', 'u', 'b'}
		},
		"short":  func([]byte) []byte { return []byte{0x12} },
		"random": func([]byte) []byte { return []byte("HTTP/1.1 400 Bad Request\r\n\r\n") },
	} {
		t.Run(name, func(t *testing.T) {
			addr := rawUDP(t, reply)
			r := probe(t, testConfig(), addr)
			// An answer with the wrong id is ignored by the client (a late
			// answer to an earlier query): it ends as a timeout.
			if name == "random" {
				if r.Status == check.OK {
					t.Errorf("random bytes: %+v", *r)
				}
				return
			}
			if r.Status != check.Unknown || r.Result != ResultError || !strings.Contains(r.Message, "answer is not DNS") {
				t.Errorf("garbage answer: %+v; want unknown saying the answer is not DNS", *r)
			}
		})
	}
}

// An answer for another name is not an answer to the probe.
func TestAnswerToAnotherQuestion(t *testing.T) {
	s := startServer(t, &server{inUDP: func(_ int64, w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		r.Question[0].Name = "evil.example."
		_ = w.WriteMsg(r)
	}})
	if r := probe(t, testConfig(), s.addr); r.Status != check.Unknown || !strings.Contains(r.Message, "another question") {
		t.Errorf("answer for another name: %+v", *r)
	}
}

func TestRefusedPortIsAProblem(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close() // nothing listens there now: ICMP port unreachable
	r := probe(t, testConfig(), addr)
	if r.Status != check.Problem || r.Result != ResultRefused || r.Attempts != 2 {
		t.Errorf("closed port: %+v; want a problem, refused, 2 attempts", *r)
	}
}

// The second server answers when the first never does: the timeouts are
// still a problem (a pod waited for them), and the answer is named.
func TestSecondServerAnswers(t *testing.T) {
	dead := rawUDP(t, func([]byte) []byte { return nil })
	s := startServer(t, &server{})
	r := probe(t, testConfig(), dead, s.addr)
	if r.Status != check.Problem || r.Server != ServerString(s.addr) || r.Timeouts != 1 || r.Rcode != "NOERROR" {
		t.Errorf("dead then live server: %+v", *r)
	}
}

// A refused port is named before a server that answers garbage: the one
// is a problem, the other cannot be judged.
func TestRefusedNamedBeforeGarbage(t *testing.T) {
	junk := rawUDP(t, func(q []byte) []byte { return []byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 3} })
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	for _, order := range [][]netip.AddrPort{{junk, closed}, {closed, junk}} {
		r := probe(t, testConfig(), order...)
		if r.Status != check.Problem || r.Result != ResultRefused || r.Server != ServerString(closed) || r.Attempts != 4 {
			t.Errorf("servers %v: %+v; want the refused one named, a problem", order, *r)
		}
	}
}

func TestNoServerIsUnknown(t *testing.T) {
	r := probe(t, testConfig())
	if r.Status != check.Unknown || r.Attempts != 0 || r.Result != ResultNone {
		t.Errorf("no server: %+v", *r)
	}
}

// The unit's IPAddressDeny= drops packets with EPERM: said at once, never a
// problem of the cluster DNS.
func TestBlockedIsUnknownAndSaysWhy(t *testing.T) {
	n := 0
	p := Prober{Exchange: func(context.Context, *dns.Msg, string, netip.AddrPort, time.Duration) (*dns.Msg, error) {
		n++
		return nil, &net.OpError{Op: "write", Net: "udp", Err: syscall.EPERM}
	}}
	cfg := testConfig()
	r := Judge(cfg, p.Probe(context.Background(), cfg, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53")}))
	if r.Status != check.Unknown || n != 1 || !strings.Contains(r.Message, "IPAddressAllow") || r.Server != "10.0.0.10" {
		t.Errorf("blocked: %d queries, %+v", n, *r)
	}
}

func TestCanceledIsUnknown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Prober{Exchange: func(ctx context.Context, _ *dns.Msg, _ string, _ netip.AddrPort, _ time.Duration) (*dns.Msg, error) {
		cancel()
		return nil, errors.Join(ctx.Err(), errors.New("i/o timeout"))
	}}
	cfg := testConfig()
	r := Judge(cfg, p.Probe(ctx, cfg, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53")}))
	if r.Status != check.Unknown || r.Timeouts != 0 {
		t.Errorf("canceled: %+v", *r)
	}
}

// BenchmarkProbeLoopback is one probe of a healthy server on loopback: the
// probe's own cost (a socket, a query, an answer) every dns.interval.
func BenchmarkProbeLoopback(b *testing.B) {
	s := startServer(b, &server{})
	cfg := testConfig()
	servers := []netip.AddrPort{s.addr}
	b.ReportAllocs()
	for b.Loop() {
		if r := Judge(cfg, Prober{}.Probe(context.Background(), cfg, servers)); r.Status != check.OK {
			b.Fatal(r.Message)
		}
	}
}
