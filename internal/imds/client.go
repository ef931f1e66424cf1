package imds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// API paths and versions.
const (
	scheduledEventsPath = "/metadata/scheduledevents?api-version=2020-07-01"
	instancePath        = "/metadata/instance?api-version=2021-02-01"
)

// Defaults for ClientConfig.
const (
	DefaultEndpoint = "http://169.254.169.254"
	DefaultTimeout  = 3 * time.Second
	DefaultMaxBody  = 1 << 20
)

// ClientConfig configures a Client. Zero values take the defaults.
type ClientConfig struct {
	// Endpoint is IMDS's base URL (scheme and host), DefaultEndpoint if empty.
	Endpoint string
	// Timeout bounds each request, reading the body included.
	Timeout time.Duration
	// MaxBody is the largest body read; a larger one is ErrBodyTooLarge.
	MaxBody int64
	// Clock runs the request timeouts; default clock.Real.
	Clock clock.Clock
	// Transport replaces the default transport, which never uses a proxy.
	Transport http.RoundTripper
}

// Client talks to IMDS. It is safe for concurrent use.
type Client struct {
	base    string
	timeout time.Duration
	maxBody int64
	clk     clock.Clock
	hc      *http.Client
}

// NewTransport returns the transport a Client uses by default: no proxy,
// whatever the environment says (IMDS must be reached directly), and few idle
// connections.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("imds: endpoint %q is not an http(s) base URL", cfg.Endpoint)
	}
	if cfg.Timeout < 0 || cfg.MaxBody < 0 {
		return nil, errors.New("imds: negative timeout or body limit")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	return &Client{
		base:    strings.TrimRight(u.String(), "/"),
		timeout: cfg.Timeout,
		maxBody: cfg.MaxBody,
		clk:     cfg.Clock,
		hc: &http.Client{
			Transport: cfg.Transport,
			// IMDS does not redirect; whatever does is not IMDS.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// WithTimeout returns a copy of c whose requests time out after d (used for the
// first call on a fresh VM, which may take up to two minutes).
func (c *Client) WithTimeout(d time.Duration) *Client {
	cc := *c
	if d > 0 {
		cc.timeout = d
	}
	return &cc
}

// Timeout is the per-request timeout.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Errors returned by Client methods; see also *StatusError and *ParseError.
var (
	ErrTimeout      = errors.New("request timed out")
	ErrBodyTooLarge = errors.New("body larger than the limit")
)

// StatusError is an answer with an HTTP status other than success.
type StatusError struct {
	Op         string // what was asked, e.g. "scheduled events"
	Code       int
	RetryAfter time.Duration // from a Retry-After header, 0 if none
	Body       string        // the start of the body, printable characters only
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: IMDS answered %d %s", e.Op, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Response is a successful scheduled events answer.
type Response struct {
	Document    Document
	ETag        string // the server's ETag, "" if it sent none
	NotModified bool   // 304: the document did not change since etag
}

// ScheduledEvents fetches the scheduled events document. A non-empty etag is
// sent as If-None-Match.
func (c *Client) ScheduledEvents(ctx context.Context, etag string) (Response, error) {
	const op = "scheduled events"
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	code, hdr, body, err := c.do(ctx, op, http.MethodGet, scheduledEventsPath, h, nil)
	if err != nil {
		return Response{}, err
	}
	if code == http.StatusNotModified {
		return Response{ETag: etag, NotModified: true}, nil
	}
	doc, err := Parse(body)
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", op, err)
	}
	return Response{Document: doc, ETag: hdr.Get("ETag")}, nil
}

// InstanceName fetches this VM's name (compute.name) from instance metadata.
func (c *Client) InstanceName(ctx context.Context) (string, error) {
	const op = "instance metadata"
	_, _, body, err := c.do(ctx, op, http.MethodGet, instancePath, nil, nil)
	if err != nil {
		return "", err
	}
	name, err := parseInstanceName(body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return name, nil
}

// Approve asks IMDS to start the event now (StartRequests). Azure starts it for
// every VM in the event's Resources, not only this one.
func (c *Client) Approve(ctx context.Context, eventID string) error {
	const op = "approve event"
	if eventID == "" {
		return errors.New("approve event: empty event id")
	}
	type startRequest struct {
		EventID string `json:"EventId"`
	}
	body, err := json.Marshal(struct {
		StartRequests []startRequest
	}{[]startRequest{{eventID}}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	_, _, _, err = c.do(ctx, op, http.MethodPost, scheduledEventsPath, h, body)
	return err
}

var errRequestTimeout = errors.New("imds request timeout")

// do runs one request under the client's timeout and returns the status,
// headers and capped body of a 2xx or 304 answer; anything else is an error.
func (c *Client) do(ctx context.Context, op, method, path string, h http.Header, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := c.clk.NewTimer(c.timeout)
	defer timer.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-timer.C():
			cancel(errRequestTimeout)
		case <-stop:
		case <-ctx.Done():
		}
	}()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Metadata", "true")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, c.transportErr(ctx, op, err)
	}
	defer resp.Body.Close()

	code := resp.StatusCode
	if code == http.StatusNotModified {
		return code, resp.Header, nil, nil
	}
	if code < 200 || code > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, nil, nil, &StatusError{
			Op:         op,
			Code:       code,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.clk.Now()),
			Body:       printable(snippet, 200),
		}
	}
	if resp.ContentLength > c.maxBody {
		return 0, nil, nil, fmt.Errorf("%s: %w (%d bytes announced, limit %d)", op, ErrBodyTooLarge, resp.ContentLength, c.maxBody)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return 0, nil, nil, c.transportErr(ctx, op, err)
	}
	if int64(len(b)) > c.maxBody {
		return 0, nil, nil, fmt.Errorf("%s: %w (limit %d)", op, ErrBodyTooLarge, c.maxBody)
	}
	return code, resp.Header, b, nil
}

func (c *Client) transportErr(ctx context.Context, op string, err error) error {
	if errors.Is(context.Cause(ctx), errRequestTimeout) {
		return fmt.Errorf("%s: %w after %s", op, ErrTimeout, c.timeout)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped at
// five minutes.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 5*time.Minute)
}

// printable keeps the first n printable characters of b, for logs.
func printable(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// Failure is the kind of a failed IMDS call; each kind has its own backoff and
// is logged once per outage.
type Failure string

// Failure kinds.
const (
	// FailUnreachable: no answer (refused, no route, timeout, reset).
	FailUnreachable Failure = "unreachable"
	// FailThrottled: 429, the per-VM request budget is used up.
	FailThrottled Failure = "throttled"
	// FailServer: 410 or 5xx, retry with backoff.
	FailServer Failure = "server error"
	// FailRejected: 400, 404 and other client errors; retrying soon will not
	// help (a wrong header or API version, or not Azure's IMDS at all).
	FailRejected Failure = "rejected"
	// FailBadBody: an answer that is not a scheduled events document.
	FailBadBody Failure = "bad response"
)

// Classify tells what kind of failure err is.
func Classify(err error) Failure {
	var se *StatusError
	var pe *ParseError
	switch {
	case errors.As(err, &se):
		switch {
		case se.Code == http.StatusTooManyRequests:
			return FailThrottled
		case se.Code == http.StatusGone || se.Code >= 500:
			return FailServer
		default:
			return FailRejected
		}
	case errors.As(err, &pe), errors.Is(err, ErrBodyTooLarge):
		return FailBadBody
	default:
		return FailUnreachable
	}
}
