package imds

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
)

func newTestClient(t *testing.T, url string, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Endpoint = url
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClient(t *testing.T) {
	for _, bad := range []string{"169.254.169.254", "ftp://x", "http://", "http://x/?a=b", "::"} {
		if _, err := NewClient(ClientConfig{Endpoint: bad}); err == nil {
			t.Errorf("NewClient(%q) = nil error", bad)
		}
	}
	c, err := NewClient(ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != DefaultEndpoint || c.timeout != DefaultTimeout || c.maxBody != DefaultMaxBody {
		t.Errorf("defaults: %+v", c)
	}
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Errorf("transport %T must not use a proxy", c.hc.Transport)
	}
	if got := c.WithTimeout(2 * time.Minute); got.Timeout() != 2*time.Minute || c.Timeout() != DefaultTimeout {
		t.Errorf("WithTimeout changed the original or did not apply")
	}
}

func TestClientIgnoresProxyEnvironment(t *testing.T) {
	// A proxy that would answer 502 to everything.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	srv := imdstest.New(clock.Real{})
	defer srv.Close()
	// Reach the server by a name that is not loopback-exempt from proxying.
	url := strings.Replace(srv.URL(), "127.0.0.1", "imds.test", 1)
	tr := NewTransport()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	c := newTestClient(t, url, ClientConfig{Transport: tr})
	if _, err := c.ScheduledEvents(t.Context(), ""); err != nil {
		t.Fatalf("request went through the proxy: %v", err)
	}
}

func TestScheduledEventsHeadersAndETag(t *testing.T) {
	srv := imdstest.New(clock.Real{})
	defer srv.Close()
	srv.UseETags(true)
	srv.SetEvents(imdstest.Event{EventID: "a", EventType: "Freeze", EventStatus: "Scheduled", Resources: []string{"vm-0"}})
	c := newTestClient(t, srv.URL(), ClientConfig{})
	r, err := c.ScheduledEvents(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.NotModified || r.ETag == "" || len(r.Document.Events) != 1 || r.Document.Events[0].ID != "a" {
		t.Fatalf("first answer %+v", r)
	}
	r2, err := c.ScheduledEvents(t.Context(), r.ETag)
	if err != nil || !r2.NotModified || r2.ETag != r.ETag {
		t.Fatalf("second answer %+v, %v; want 304", r2, err)
	}
	if st := srv.Stats(); st.BadRequests != 0 || st.EventGets != 2 {
		t.Errorf("stats %+v: the Metadata header must be sent", st)
	}
}

func TestClientErrors(t *testing.T) {
	big := strings.Repeat(" ", 2<<20) + `{"Events":[]}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		kind    Failure
		check   func(t *testing.T, err error)
	}{
		{
			name: "429 with Retry-After",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
			},
			kind: FailThrottled,
			check: func(t *testing.T, err error) {
				var se *StatusError
				if !errors.As(err, &se) || se.RetryAfter != 7*time.Second {
					t.Errorf("err = %v, want RetryAfter 7s", err)
				}
			},
		},
		{name: "410", handler: status(http.StatusGone, ""), kind: FailServer},
		{name: "500", handler: status(http.StatusInternalServerError, "oops"), kind: FailServer},
		{name: "503", handler: status(http.StatusServiceUnavailable, ""), kind: FailServer},
		{
			name:    "400 keeps a printable snippet of the body",
			handler: status(http.StatusBadRequest, "{\"error\":\"Bad request.\x00\x1b[31m Required metadata header not specified\"}"),
			kind:    FailRejected,
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "Required metadata header") || strings.ContainsAny(err.Error(), "\x00\x1b") {
					t.Errorf("err = %q", err)
				}
			},
		},
		{name: "404", handler: status(http.StatusNotFound, ""), kind: FailRejected},
		{name: "403 (another cloud)", handler: status(http.StatusForbidden, ""), kind: FailRejected},
		{
			name: "redirect is not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
			},
			kind: FailRejected,
		},
		{name: "garbage", handler: status(http.StatusOK, "<html>hello</html>"), kind: FailBadBody},
		{name: "truncated JSON", handler: status(http.StatusOK, `{"DocumentIncarnation":1,"Events":[{"EventId":`), kind: FailBadBody},
		{
			name: "huge body, length announced",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "10485760")
				_, _ = io.WriteString(w, strings.Repeat("x", 10<<20))
			},
			kind:  FailBadBody,
			check: func(t *testing.T, err error) { wantIs(t, err, ErrBodyTooLarge) },
		},
		{
			name: "huge body, chunked",
			handler: func(w http.ResponseWriter, r *http.Request) {
				for range 10 {
					_, _ = io.WriteString(w, big[:1<<20])
					w.(http.Flusher).Flush()
				}
			},
			kind:  FailBadBody,
			check: func(t *testing.T, err error) { wantIs(t, err, ErrBodyTooLarge) },
		},
		{
			name: "connection dropped",
			handler: func(w http.ResponseWriter, r *http.Request) {
				c, _, _ := w.(http.Hijacker).Hijack()
				c.Close()
			},
			kind: FailUnreachable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newTestClient(t, srv.URL, ClientConfig{})
			_, err := c.ScheduledEvents(t.Context(), "")
			if err == nil {
				t.Fatal("no error")
			}
			if got := Classify(err); got != tt.kind {
				t.Errorf("Classify(%v) = %q, want %q", err, got, tt.kind)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("err = %v, want %v", err, target)
	}
}

func TestConnectionRefusedIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newTestClient(t, "http://"+addr, ClientConfig{})
	_, err = c.ScheduledEvents(t.Context(), "")
	if Classify(err) != FailUnreachable {
		t.Fatalf("err = %v (%s), want unreachable", err, Classify(err))
	}
}

// A server that never answers: the request gives up after the client's timeout
// (real time, kept well under a second).
func TestHangingServerTimesOut(t *testing.T) {
	srv := imdstest.New(clock.Real{})
	defer srv.Close()
	srv.Push(imdstest.Reply{Hang: true})
	c := newTestClient(t, srv.URL(), ClientConfig{Timeout: 150 * time.Millisecond})
	start := time.Now()
	_, err := c.ScheduledEvents(t.Context(), "")
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Errorf("took %v", el)
	}
	wantIs(t, err, ErrTimeout)
	if Classify(err) != FailUnreachable {
		t.Errorf("Classify = %s", Classify(err))
	}
}

// The timeout runs on the injected clock: a call answered after two minutes of
// fake time succeeds under a longer timeout and fails under a shorter one.
func TestTimeoutOnInjectedClock(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		ok      bool
	}{{130 * time.Second, true}, {90 * time.Second, false}} {
		f := clock.NewFake(time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC))
		srv := imdstest.New(f)
		srv.Push(imdstest.Reply{Delay: 2 * time.Minute})
		c := newTestClient(t, srv.URL(), ClientConfig{Clock: f, Timeout: tc.timeout})
		done := make(chan error, 1)
		go func() {
			_, err := c.ScheduledEvents(context.Background(), "")
			done <- err
		}()
		f.BlockUntil(2) // the client's timeout and the server's delay
		// One timer at a time: advanced past both at once, which one fires
		// first is up to the scheduler.
		var err error
		if tc.timeout < 2*time.Minute {
			f.Advance(tc.timeout + time.Second)
			err = <-done // before the server's answer is due
			f.Advance(2*time.Minute - tc.timeout - time.Second)
		} else {
			f.Advance(2 * time.Minute)
			err = <-done
		}
		if (err == nil) != tc.ok {
			t.Errorf("timeout %v: err = %v", tc.timeout, err)
		}
		srv.Close()
	}
}

func TestInstanceName(t *testing.T) {
	srv := imdstest.New(clock.Real{})
	defer srv.Close()
	c := newTestClient(t, srv.URL(), ClientConfig{})
	srv.SetName("aks-nodepool1-1234_5")
	if name, err := c.InstanceName(t.Context()); err != nil || name != "aks-nodepool1-1234_5" {
		t.Errorf("InstanceName = %q, %v", name, err)
	}
	srv.SetName("")
	if _, err := c.InstanceName(t.Context()); Classify(err) != FailRejected {
		t.Errorf("err = %v", err)
	}
}

func TestApprove(t *testing.T) {
	srv := imdstest.New(clock.Real{})
	defer srv.Close()
	c := newTestClient(t, srv.URL(), ClientConfig{})
	if err := c.Approve(t.Context(), "602d9444"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Approvals(); len(got) != 1 || got[0] != "602d9444" {
		t.Errorf("approvals %v", got)
	}
	if err := c.Approve(t.Context(), ""); err == nil {
		t.Error("empty id approved")
	}
	srv.SetApproveStatus(http.StatusInternalServerError)
	if err := c.Approve(t.Context(), "b"); Classify(err) != FailServer {
		t.Errorf("err = %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-3":                            0,
		"99999":                         5 * time.Minute,
		"Wed, 29 Apr 2026 18:00:10 GMT": 10 * time.Second,
		"soon":                          0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
