package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the HTTP server. A scrape gathers in-memory values only, so
// they are short.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	gatherTimeout     = 10 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// Server is a running /metrics and /healthz endpoint. A nil *Server (metrics
// disabled) is valid: Addr returns nil and Wait returns at once.
type Server struct {
	addr net.Addr
	lim  *connLimiter
	done chan struct{}
	err  error
}

// Serve binds listen (host:port) at once, so a caller can report readiness
// right after it returns, then serves in the background until ctx ends:
//
//	/metrics  m's registry in the Prometheus exposition formats
//	/healthz  200 "ok", or 503 with the error health returns (nil health: always ok)
//
// It holds at most maxConns connections: at the cap a new connection
// displaces the longest-waiting one that has no request in progress.
//
// listen "" means metrics are disabled: Serve returns (nil, nil).
func Serve(ctx context.Context, listen string, m *Metrics, health func() error, log *slog.Logger) (*Server, error) {
	if listen == "" {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", listen, err)
	}
	lim := newConnLimiter(ln, maxConns)
	srv := &http.Server{
		ConnState:         lim.track,
		Handler:           newMux(m, health, log),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s := &Server{addr: ln.Addr(), lim: lim, done: make(chan struct{})}
	log.Info("serving metrics", "addr", s.addr.String(), "max_connections", maxConns)
	go s.run(ctx, srv, lim, log)
	return s, nil
}

func (s *Server) run(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) {
	defer close(s.done)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: serve on %s: %w", s.addr, err)
		}
	case err := <-errc:
		s.err = fmt.Errorf("metrics: serve on %s: %w", s.addr, err)
		log.Error("metrics endpoint stopped", "err", err)
	}
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() net.Addr {
	if s == nil {
		return nil
	}
	return s.addr
}

// Wait blocks until the server has stopped (its context ended and open
// requests finished, or serving failed) and returns why serving failed, if it
// did.
func (s *Server) Wait() error {
	if s == nil {
		return nil
	}
	<-s.done
	return s.err
}

func newMux(m *Metrics, health func() error, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             gatherTimeout,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, err.Error()+"\n")
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "nodekeeper\n\n/metrics  Prometheus metrics\n/healthz  health of the daemon\n")
	})
	return mux
}
