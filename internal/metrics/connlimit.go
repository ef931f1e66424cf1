package metrics

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// maxConns is how many connections the metrics endpoint holds at once. A
// scrape needs one (two while a scraper reconnects); the endpoint may be
// bound to the node's address for fleet scraping, so anyone who can reach it
// could otherwise open thousands of idle connections, each costing the daemon
// a goroutine and buffers (6 000 of them took it from 13 to 56 MiB).
const maxConns = 32

// connLimiter keeps at most max connections open. When a new connection
// arrives at the cap, the one that has waited longest without a request in
// progress (just opened, or idle between keep-alive requests) is closed to
// make room, so idle connections cannot lock a scraper out; only when all of
// them are serving a request is the new one closed at once.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]connEntry
	seq   uint64 // orders admissions and state changes (a clock can tie)

	evicted atomic.Uint64 // idle connections closed to make room
	refused atomic.Uint64 // new connections closed because all were busy
}

type connEntry struct {
	state http.ConnState
	since uint64 // seq when it entered state
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: make(map[net.Conn]connEntry, max)}
}

// Accept returns the next connection, having made room for it.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		_ = c.Close()
		l.refused.Add(1)
	}
}

func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var victim net.Conn
		var oldest uint64
		for vc, e := range l.conns {
			if e.state != http.StateActive && (victim == nil || e.since < oldest) {
				victim, oldest = vc, e.since
			}
		}
		if victim == nil {
			return false
		}
		delete(l.conns, victim)
		_ = victim.Close() // the server sees the read fail and lets go of it
		l.evicted.Add(1)
	}
	l.seq++
	l.conns[c] = connEntry{state: http.StateNew, since: l.seq}
	return true
}

// track is the http.Server's ConnState hook: it follows each admitted
// connection's state and forgets it once closed or hijacked.
func (l *connLimiter) track(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.conns[c]
	if !ok {
		return // evicted already
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		if e.state != st {
			l.seq++
			l.conns[c] = connEntry{state: st, since: l.seq}
		}
	}
}

// open is the number of connections held now.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
