package metrics

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestIdleConnectionsAreCapped: many idle connections to the endpoint (as
// anyone who can reach a node-IP listener can open) leave the server holding
// at most maxConns, the excess closed by the server, and a scrape still
// answered. Before the cap the server held every one of them.
func TestIdleConnectionsAreCapped(t *testing.T) {
	m := New()
	s, base, _ := startServer(t, m, nil)
	const n = maxConns + 40
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The server accepts asynchronously; every connection it closed reads
	// EOF at once, so count them with a short deadline.
	closed := 0
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
	}
	for _, c := range conns[:n-maxConns] {
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed != n-maxConns {
		t.Errorf("server closed %d of the %d oldest idle connections, want all", closed, n-maxConns)
	}
	if got := s.lim.open(); got > maxConns {
		t.Errorf("server holds %d connections, cap %d", got, maxConns)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("/metrics with the endpoint full of idle connections: %d", code)
	}
	if got := s.lim.open(); got > maxConns {
		t.Errorf("server holds %d connections after a scrape, cap %d", got, maxConns)
	}
	if s.lim.evicted.Load() < n-maxConns {
		t.Errorf("evicted %d, want at least %d", s.lim.evicted.Load(), n-maxConns)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestBusyConnectionsRefuseNewOnes: when every held connection is serving a
// request, a new one is closed at once rather than displacing a scrape.
func TestBusyConnectionsRefuseNewOnes(t *testing.T) {
	l := newConnLimiter(nil, 2)
	a, b, c := fakeConn(t), fakeConn(t), fakeConn(t)
	if !l.admit(a) || !l.admit(b) {
		t.Fatal("under the cap a connection must be admitted")
	}
	l.track(a, http.StateActive)
	l.track(b, http.StateActive)
	if l.admit(c) {
		t.Error("admitted a third connection while two requests are in progress")
	}
	l.track(b, http.StateIdle)
	if !l.admit(c) {
		t.Fatal("an idle connection should make room")
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Error("the idle connection was not closed")
	}
	l.track(b, http.StateClosed) // the server's own report after eviction
	l.track(a, http.StateClosed)
	if got := l.open(); got != 1 {
		t.Errorf("open = %d, want 1", got)
	}
}

func fakeConn(t *testing.T) net.Conn {
	c, peer := net.Pipe()
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return c
}
