package freeze_test

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
)

// BenchmarkChurnPoll is one poll of a 4 000-event document whose ids all
// change at every poll, through the daemon's composition: fetch over
// loopback, parse, track, correlate. The documents are built beforehand, so
// the fake server's work is little more than writing them. It reports the
// log lines written per poll as lines/op.
func BenchmarkChurnPoll(b *testing.B) {
	f := clock.NewFake(t0)
	srv := imdstest.New(f)
	b.Cleanup(srv.Close)
	docs := [][]byte{imdstest.ChurnDocument(4000, 1, "vm-0"), imdstest.ChurnDocument(4000, 2, "vm-0")}
	c, err := imds.NewClient(imds.ClientConfig{Endpoint: srv.URL(), Clock: f})
	if err != nil {
		b.Fatal(err)
	}
	corr, err := freeze.New(freeze.Config{Clock: f, Emit: func(freeze.Resume) {}})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := imds.NewWatcher(imds.WatcherConfig{Client: c, Observer: corr, Clock: f, ResourceName: "vm-0",
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Jitter: func() float64 { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	lines := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		srv.Push(imdstest.Reply{Body: docs[i%2]})
		f.Advance(time.Second)
		w.Poll(b.Context())
		lines += bytes.Count(buf.Bytes(), []byte("\n"))
		buf.Reset()
	}
	b.ReportMetric(float64(lines)/float64(b.N), "lines/op")
}
