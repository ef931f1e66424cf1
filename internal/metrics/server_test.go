package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func startServer(t *testing.T, m *Metrics, health func() error) (*Server, string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Serve(ctx, "127.0.0.1:0", m, health, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = s.Wait()
	})
	return s, "http://" + s.Addr().String(), cancel
}

func TestServeHTTP(t *testing.T) {
	m := New()
	representative(m)
	var unhealthy atomic.Bool
	s, base, cancel := startServer(t, m, func() error {
		if unhealthy.Load() {
			return errors.New("main loop stuck for 3m0s")
		}
		return nil
	})
	if tcp, ok := s.Addr().(*net.TCPAddr); !ok || tcp.Port == 0 || !tcp.IP.IsLoopback() {
		t.Fatalf("Addr = %v, want a bound loopback port", s.Addr())
	}

	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	fams, err := promtext.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	for _, want := range []struct {
		name   string
		labels promtext.Labels
		value  float64
	}{
		{"nodekeeper_nic_irq_cpu", promtext.Labels{"interface": "eth0", "irq": "25", "queue": "comp1"}, 1},
		{"nodekeeper_build_info", promtext.Labels{"goversion": runtime.Version()}, 1},
	} {
		if v, ok := fams.Value(want.name, want.labels); !ok || v != want.value {
			t.Errorf("/metrics: %s%v = %v (present %v), want %v", want.name, want.labels, v, ok, want.value)
		}
	}
	if _, ok := fams.Value("go_goroutines", nil); !ok {
		t.Error("/metrics lacks go_goroutines")
	}

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	unhealthy.Store(true)
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "main loop stuck") {
		t.Errorf("/healthz = %d %q, want 503 with the error", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
	if code, body := get(t, base+"/"); code != http.StatusOK || !strings.Contains(body, "/metrics") {
		t.Errorf("/ = %d %q", code, body)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d, want 405", resp.StatusCode)
	}

	cancel()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wait = %v, want nil after a clean shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not shut down after its context ended")
	}
	if _, err := (&http.Client{Timeout: time.Second}).Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeNilHealthIsOK(t *testing.T) {
	_, base, _ := startServer(t, New(), nil)
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

func TestServeDisabled(t *testing.T) {
	s, err := Serve(context.Background(), "", New(), nil, nil)
	if err != nil || s != nil {
		t.Fatalf("Serve(\"\") = %v, %v; want nil, nil", s, err)
	}
	if s.Addr() != nil || s.Wait() != nil {
		t.Error("a nil Server should have no address and nothing to wait for")
	}
}

func TestServeBindErrorIsImmediate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Serve(context.Background(), ln.Addr().String(), New(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Errorf("Serve on a taken port = %v, want a listen error", err)
	}
	if _, err := Serve(context.Background(), "not an address", New(), nil, nil); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter over /metrics, as
// peers do in their Makefiles.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus); `promtool check metrics` not run")
	}
	m := New()
	representative(m)
	_, base, _ := startServer(t, m, nil)
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}
