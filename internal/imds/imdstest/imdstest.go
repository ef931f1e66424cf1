// Package imdstest owns a scripted fake of Azure's Instance Metadata Service for
// tests: the scheduled events document (with DocumentIncarnation and ETags),
// approvals, instance metadata, and the ways IMDS misbehaves — throttling,
// server errors, garbage, huge bodies, answers that take minutes, and answers
// that never come. Delays run on an injected clock, so a test of a two-minute
// first call does not wait two minutes.
package imdstest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

// Event is a scheduled event in IMDS's wire format.
type Event struct {
	EventID           string `json:"EventId"`
	EventType         string
	ResourceType      string
	Resources         []string
	EventStatus       string
	NotBefore         string
	Description       string
	EventSource       string
	DurationInSeconds int
}

// Reply scripts one answer to a scheduled events GET.
type Reply struct {
	// Status is the HTTP status; 0 means 200 with the current document.
	Status int
	// Body, when not nil, is sent instead of the document.
	Body []byte
	// Header is added to the answer.
	Header http.Header
	// Delay postpones the answer by this long on the server's clock.
	Delay time.Duration
	// Hang never answers: the request ends when the client gives up.
	Hang bool
}

// Server is the fake IMDS. Its methods are safe for concurrent use.
type Server struct {
	srv     *httptest.Server
	clk     clock.Clock
	closing chan struct{}
	arrived chan string

	mu             sync.Mutex
	incarnation    int
	events         []Event
	queue          []Reply
	name           string
	instanceStatus int
	approveStatus  int
	etags          bool
	approvals      []string
	eventGets      int
	instanceGets   int
	badRequests    int
	inFlight       int
	maxInFlight    int
	churn          int // events per document when churning; 0: the set events
	round          int
}

// New starts a fake IMDS whose delays run on clk. The VM's name is "vm-0".
func New(clk clock.Clock) *Server {
	s := &Server{
		clk:         clk,
		closing:     make(chan struct{}),
		arrived:     make(chan string, 1024),
		incarnation: 1,
		name:        "vm-0",
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the base URL to give the client as its endpoint.
func (s *Server) URL() string { return s.srv.URL }

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetEvents replaces the event list and bumps DocumentIncarnation.
func (s *Server) SetEvents(events ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append([]Event(nil), events...)
	s.incarnation++
}

// Churn makes every scheduled events GET answer n Freeze events for this VM,
// half Scheduled and half Started, all under ids never served before, with a
// new DocumentIncarnation: hostile input that changes everything every poll.
// n = 0 goes back to the set events.
func (s *Server) Churn(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.churn = n
}

// ChurnEvents returns the n events of churn round r for the VM named vm.
func ChurnEvents(n, r int, vm string) []Event {
	evs := make([]Event, n)
	for i := range evs {
		st := "Scheduled"
		if i%2 == 1 {
			st = "Started"
		}
		evs[i] = Event{EventID: "churn-" + strconv.Itoa(r) + "-" + strconv.Itoa(i), EventType: "Freeze",
			ResourceType: "VirtualMachine", Resources: []string{vm}, EventStatus: st,
			EventSource: "Platform", DurationInSeconds: 5}
	}
	return evs
}

// ChurnDocument is the scheduled events document of churn round r (its
// DocumentIncarnation is r), to serve with Push(Reply{Body: …}) when the cost
// of building it must not count.
func ChurnDocument(n, r int, vm string) []byte {
	b, _ := json.Marshal(struct {
		DocumentIncarnation int
		Events              []Event
	}{r, ChurnEvents(n, r, vm)})
	return b
}

// SetEventsSameIncarnation replaces the event list without bumping
// DocumentIncarnation (which real IMDS never does).
func (s *Server) SetEventsSameIncarnation(events ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append([]Event(nil), events...)
}

// Push queues one-shot replies for the next scheduled events GETs; when the
// queue is empty the current document is served.
func (s *Server) Push(r ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, r...)
}

// SetName sets compute.name; "" makes instance metadata answer 404.
func (s *Server) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = name
}

// SetInstanceStatus makes instance metadata answer code (0: normal).
func (s *Server) SetInstanceStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instanceStatus = code
}

// SetApproveStatus makes approvals answer code (0: 200).
func (s *Server) SetApproveStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approveStatus = code
}

// UseETags makes the server send ETags and answer 304 to a matching
// If-None-Match.
func (s *Server) UseETags(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etags = on
}

// Approvals returns the event ids approved so far, in order.
func (s *Server) Approvals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.approvals...)
}

// Stats counts requests.
type Stats struct {
	EventGets    int // scheduled events GETs
	InstanceGets int // instance metadata GETs
	BadRequests  int // requests refused for a missing Metadata header or a proxy's header
	MaxInFlight  int // most scheduled events GETs in progress at once
}

// Stats returns the request counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{EventGets: s.eventGets, InstanceGets: s.instanceGets, BadRequests: s.badRequests, MaxInFlight: s.maxInFlight}
}

// Arrived receives the path of every request as it arrives (buffered; old
// entries are dropped when nobody reads).
func (s *Server) Arrived() <-chan string { return s.arrived }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case s.arrived <- r.URL.Path:
	default:
	}
	if r.Header.Get("Metadata") != "true" || r.Header.Get("X-Forwarded-For") != "" {
		s.mu.Lock()
		s.badRequests++
		s.mu.Unlock()
		http.Error(w, `{"error":"Bad request. Required metadata header not specified"}`, http.StatusBadRequest)
		return
	}
	switch {
	case r.URL.Path == "/metadata/scheduledevents" && r.Method == http.MethodGet &&
		r.URL.Query().Get("api-version") == "2020-07-01":
		s.scheduledEvents(w, r)
	case r.URL.Path == "/metadata/scheduledevents" && r.Method == http.MethodPost:
		s.approve(w, r)
	case r.URL.Path == "/metadata/instance" && r.Method == http.MethodGet:
		s.instance(w)
	default:
		http.Error(w, `{"error":"Not found"}`, http.StatusNotFound)
	}
}

func (s *Server) scheduledEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.eventGets++
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	var rep Reply
	if len(s.queue) > 0 {
		rep, s.queue = s.queue[0], s.queue[1:]
	}
	if s.churn > 0 {
		s.round++
		s.events = ChurnEvents(s.churn, s.round, s.name)
		s.incarnation++
	}
	doc := s.documentLocked()
	etag := ""
	if s.etags {
		etag = `"` + strconv.Itoa(s.incarnation) + `"`
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()

	if rep.Hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	}
	if rep.Delay > 0 && clock.Sleep(r.Context(), s.clk, rep.Delay) != nil {
		return
	}
	for k, v := range rep.Header {
		w.Header()[k] = v
	}
	if rep.Status != 0 && rep.Status != http.StatusOK {
		w.WriteHeader(rep.Status)
		if rep.Body != nil {
			_, _ = w.Write(rep.Body)
		}
		return
	}
	body := doc
	if rep.Body != nil {
		body = rep.Body
	} else if etag != "" {
		if strings.Contains(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(body)
}

func (s *Server) documentLocked() []byte {
	evs := make([]Event, len(s.events))
	copy(evs, s.events)
	for i := range evs {
		if evs[i].Resources == nil {
			evs[i].Resources = []string{}
		}
	}
	b, _ := json.Marshal(struct {
		DocumentIncarnation int
		Events              []Event
	}{s.incarnation, evs})
	return b
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StartRequests []struct {
			EventID string `json:"EventId"`
		}
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || len(req.StartRequests) == 0 {
		http.Error(w, `{"error":"bad StartRequests"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	code := s.approveStatus
	if code == 0 {
		for _, sr := range req.StartRequests {
			s.approvals = append(s.approvals, sr.EventID)
		}
	}
	s.mu.Unlock()
	if code != 0 {
		w.WriteHeader(code)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) instance(w http.ResponseWriter) {
	s.mu.Lock()
	s.instanceGets++
	name, code := s.name, s.instanceStatus
	s.mu.Unlock()
	if code != 0 {
		w.WriteHeader(code)
		return
	}
	if name == "" {
		http.Error(w, `{"error":"Not found"}`, http.StatusNotFound)
		return
	}
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(map[string]any{
		"compute": map[string]any{"name": name, "location": "westeurope", "vmId": "00000000-0000-0000-0000-000000000000"},
	})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
