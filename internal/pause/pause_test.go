package pause

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/clock"
)

var t0 = time.Date(2026, 4, 29, 18, 0, 0, 0, time.UTC)

// series builds samples tick by tick: each step advances the monotonic clock
// by mono and the wall clock by mono+step.
type series struct {
	s []Sample
}

func newSeries() *series { return &series{s: []Sample{{Mono: time.Hour, Real: t0}}} }

func (x *series) next(mono, step time.Duration) *series {
	last := x.s[len(x.s)-1]
	x.s = append(x.s, Sample{Mono: last.Mono + mono, Real: last.Real.Add(mono + step)})
	return x
}

func (x *series) ticks(n int, d time.Duration) *series {
	for range n {
		x.next(d, 0)
	}
	return x
}

func TestObserve(t *testing.T) {
	const tick = 250 * time.Millisecond
	tests := []struct {
		name   string
		s      *series
		want   []Pause // in order
		wantAt []int   // index of the sample each pause is reported at
	}{
		{
			name: "steady ticks",
			s:    newSeries().ticks(100, tick),
		},
		{
			name: "jitter below threshold",
			s: newSeries().next(tick+time.Second, 0).next(tick/2, 0).next(tick+1999*time.Millisecond, 0).
				next(tick, 1900*time.Millisecond).next(tick, -1900*time.Millisecond).next(tick, 50*time.Millisecond),
		},
		{
			name:   "gap exactly at threshold",
			s:      newSeries().ticks(3, tick).next(tick+2*time.Second, 0).ticks(3, tick),
			want:   []Pause{{Length: 2 * time.Second, Kind: KindGap}},
			wantAt: []int{4},
		},
		{
			name:   "ten second freeze seen by the monotonic clock",
			s:      newSeries().ticks(4, tick).next(tick+10*time.Second, 0).ticks(4, tick),
			want:   []Pause{{Length: 10 * time.Second, Kind: KindGap}},
			wantAt: []int{5},
		},
		{
			name:   "freeze invisible to monotonic, wall clock stepped on resync",
			s:      newSeries().ticks(4, tick).next(tick, 7*time.Second).ticks(4, tick),
			want:   []Pause{{Length: 7 * time.Second, Kind: KindStep}},
			wantAt: []int{5},
		},
		{
			name:   "gap and step at the same tick add up",
			s:      newSeries().ticks(2, tick).next(tick+3*time.Second, 4*time.Second).ticks(2, tick),
			want:   []Pause{{Length: 7 * time.Second, Kind: KindGap}},
			wantAt: []int{3},
		},
		{
			name:   "small gap with a large step is a step",
			s:      newSeries().ticks(2, tick).next(tick+time.Second, 5*time.Second),
			want:   []Pause{{Length: 6 * time.Second, Kind: KindStep}},
			wantAt: []int{3},
		},
		{
			name: "backward step is not a pause",
			s:    newSeries().ticks(2, tick).next(tick, -time.Hour).ticks(2, tick),
		},
		{
			name: "monotonic going backwards is ignored",
			s: func() *series {
				x := newSeries().ticks(2, tick)
				x.s = append(x.s, Sample{Mono: 0, Real: t0})
				return x.ticks(2, tick)
			}(),
		},
		{
			name:   "two pauses",
			s:      newSeries().next(tick+5*time.Second, 0).ticks(10, tick).next(tick, 3*time.Second),
			want:   []Pause{{Length: 5 * time.Second, Kind: KindGap}, {Length: 3 * time.Second, Kind: KindStep}},
			wantAt: []int{1, 12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(Config{Tick: tick, GapThreshold: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var got []Pause
			var at []int
			for i, s := range tt.s.s {
				if p, ok := d.Observe(s); ok {
					got = append(got, p)
					at = append(at, i)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d pauses %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				w := tt.want[i]
				w.At = tt.s.s[tt.wantAt[i]].Real
				if got[i] != w || at[i] != tt.wantAt[i] {
					t.Errorf("pause %d = %+v at sample %d, want %+v at sample %d", i, got[i], at[i], w, tt.wantAt[i])
				}
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Tick: -1},
		{GapThreshold: -1},
		{Tick: time.Second, GapThreshold: time.Second},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) = nil error", c)
		}
	}
	d, err := New(Config{})
	if err != nil || d.tick != DefaultTick || d.threshold != DefaultGapThreshold {
		t.Errorf("New(zero) = %+v, %v", d, err)
	}
}

// fakeClocks derives both kernel clocks from a clock.Fake; step moves the wall
// clock alone (a pause the monotonic clock did not see). Every Read is
// announced on reads until done is closed.
type fakeClocks struct {
	f     *clock.Fake
	start time.Time
	reads chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	step time.Duration
	fail bool
}

func (c *fakeClocks) Read() (Sample, error) {
	defer func() {
		select {
		case c.reads <- struct{}{}:
		case <-c.done:
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return Sample{}, errors.New("injected")
	}
	now := c.f.Now()
	return Sample{Mono: now.Sub(c.start), Real: now.Add(c.step)}, nil
}

func (c *fakeClocks) set(fn func(c *fakeClocks)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(c)
}

// runDetector starts Run on a fake clock; the returned function advances the
// clock by d and waits for the detector's read of that tick.
func runDetector(t *testing.T) (*fakeClocks, func(d time.Duration), <-chan Pause) {
	t.Helper()
	f := clock.NewFake(t0)
	fc := &fakeClocks{f: f, start: t0, reads: make(chan struct{}), done: make(chan struct{})}
	d, err := New(Config{Tick: 250 * time.Millisecond, GapThreshold: 2 * time.Second, Clock: f, Clocks: fc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	pauses := make(chan Pause, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, func(p Pause) { pauses <- p })
	}()
	t.Cleanup(func() {
		cancel()
		close(fc.done)
		<-done
	})
	<-fc.reads // baseline
	f.BlockUntil(1)
	advance := func(d time.Duration) {
		f.Advance(d)
		<-fc.reads
	}
	return fc, advance, pauses
}

func TestRunReportsGapWithoutSleeping(t *testing.T) {
	_, advance, pauses := runDetector(t)
	for range 8 {
		advance(250 * time.Millisecond)
	}
	advance(12 * time.Second) // the VM was frozen; the ticker fires once on resume
	select {
	case p := <-pauses:
		if p.Kind != KindGap || p.Length < 11500*time.Millisecond || p.Length > 12*time.Second {
			t.Fatalf("pause = %+v, want a gap of about 12s", p)
		}
		if want := t0.Add(2*time.Second + 12*time.Second); !p.At.Equal(want) {
			t.Errorf("At = %v, want %v", p.At, want)
		}
	default:
		t.Fatal("no pause reported")
	}
	advance(250 * time.Millisecond)
	select {
	case p := <-pauses:
		t.Fatalf("extra pause %+v", p)
	default:
	}
}

func TestRunReportsStepWhenMonotonicMissesThePause(t *testing.T) {
	fc, advance, pauses := runDetector(t)
	advance(250 * time.Millisecond)
	// The pause: wall time moves 30 s, monotonic time does not.
	fc.set(func(c *fakeClocks) { c.step = 30 * time.Second })
	advance(250 * time.Millisecond)
	p := <-pauses
	if p.Kind != KindStep || p.Length != 30*time.Second {
		t.Fatalf("pause = %+v, want a 30s step", p)
	}
	// Jitter below the threshold after that: nothing.
	for _, j := range []time.Duration{time.Second, 1500 * time.Millisecond, 300 * time.Millisecond} {
		advance(j)
	}
	select {
	case p := <-pauses:
		t.Fatalf("extra pause %+v", p)
	default:
	}
}

func TestRunSurvivesClockReadErrors(t *testing.T) {
	fc, advance, pauses := runDetector(t)
	fc.set(func(c *fakeClocks) { c.fail = true })
	advance(250 * time.Millisecond)
	advance(10 * time.Second) // unseen: the clocks cannot be read
	fc.set(func(c *fakeClocks) { c.fail = false })
	advance(250 * time.Millisecond) // new baseline, not a pause
	advance(250 * time.Millisecond)
	select {
	case p := <-pauses:
		t.Fatalf("pause %+v across a read error", p)
	default:
	}
	advance(5 * time.Second)
	if p := <-pauses; p.Kind != KindGap {
		t.Fatalf("pause = %+v", p)
	}
}

func TestSystemClocks(t *testing.T) {
	a, err := SystemClocks{}.Read()
	if err != nil {
		t.Fatal(err)
	}
	b, err := SystemClocks{}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if b.Mono < a.Mono || a.Mono <= 0 {
		t.Errorf("monotonic readings %v then %v", a.Mono, b.Mono)
	}
	if d := time.Since(a.Real); d < 0 || d > time.Minute {
		t.Errorf("realtime reading %v is %v from now", a.Real, d)
	}
}

// FuzzObserve feeds arbitrary clock readings: the detector must never panic and
// every pause it reports must be at least the threshold long.
func FuzzObserve(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 200, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 127, 0, 0, 0, 0, 0, 0, 0, 128})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		var mono time.Duration
		wall := t0
		for len(b) >= 8 {
			dm := time.Duration(int32(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24)) * time.Microsecond
			dr := time.Duration(int32(uint32(b[4])|uint32(b[5])<<8|uint32(b[6])<<16|uint32(b[7])<<24)) * time.Microsecond
			b = b[8:]
			mono += dm
			wall = wall.Add(dr)
			p, ok := d.Observe(Sample{Mono: mono, Real: wall})
			if ok && (p.Length < DefaultGapThreshold || !p.At.Equal(wall) || (p.Kind != KindGap && p.Kind != KindStep)) {
				t.Fatalf("bad pause %+v", p)
			}
		}
	})
}
