package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/printable"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/pause"
	"github.com/nodekeeper/nodekeeper/internal/state"
)

// FreezeWatch is the VM-pause side of the daemon: the clock detector on every
// cloud, plus Azure's scheduled events when IMDS is enabled.
type FreezeWatch struct {
	Resumes <-chan freeze.Resume
	// Active lists this VM's Freeze events that are Scheduled or Started.
	Active func() []imds.Event
	// Changed fires when that list changes.
	Changed <-chan struct{}
	IMDS    bool
}

// IMDSEnabled resolves imds.enabled: auto means "this is an Azure VM" (DMI).
func IMDSEnabled(cfg config.Config, h *hostfs.FS) (bool, string) {
	switch cfg.IMDS.Enabled {
	case config.IMDSTrue:
		return true, "imds.enabled is true"
	case config.IMDSFalse:
		return false, "imds.enabled is false"
	}
	azure, err := imds.DetectAzure(h.Sys())
	if err != nil {
		return false, "cannot read DMI to detect Azure: " + err.Error()
	}
	if azure {
		return true, "Azure VM detected from DMI"
	}
	return false, "not an Azure VM (DMI): scheduled events are not polled"
}

// StartFreezeWatch starts the pause detector and, when enabled, the IMDS
// watcher; both stop with ctx. One VM pause gives one Resume, however many
// signals it produced.
func StartFreezeWatch(ctx context.Context, cfg config.Config, h *hostfs.FS, m *metrics.Metrics, log *slog.Logger, clk clock.Clock) (FreezeWatch, error) {
	resumes := make(chan freeze.Resume, 8)
	changed := make(chan struct{}, 1)
	corr, err := freeze.New(freeze.Config{Clock: clk, Logger: log.With("component", "freeze"), Emit: func(r freeze.Resume) {
		select {
		case resumes <- r:
		default: // the daemon is still handling earlier pauses: this one merges into them
		}
	}})
	if err != nil {
		return FreezeWatch{}, err
	}
	det, err := pause.New(pause.Config{Tick: cfg.PauseDetector.Tick, GapThreshold: cfg.PauseDetector.GapThreshold,
		Clock: clk, Logger: log.With("component", "pause")})
	if err != nil {
		return FreezeWatch{}, err
	}
	go det.Run(ctx, corr.Pause)
	fw := FreezeWatch{Resumes: resumes, Active: corr.Active, Changed: changed}
	on, why := IMDSEnabled(cfg, h)
	log.Info("VM pause detection: clock gaps and steps; "+why, "imds", on)
	if !on {
		return fw, nil
	}
	client, err := imds.NewClient(imds.ClientConfig{Endpoint: cfg.IMDS.Endpoint, Clock: clk})
	if err != nil {
		return FreezeWatch{}, err
	}
	m.EnableIMDS()
	obs := imds.Funcs{
		OnUp: func(up bool, err error) {
			m.SetIMDSUp(up)
			if !up {
				log.Warn("IMDS unreachable: pauses are still detected from the clock", logging.Msg(logging.MsgIMDSUnreachable), "err", err)
			}
		},
		OnEventSeen: func(e imds.Event) { m.IncScheduledEvent(e.Type.Label()) },
		OnFreezeStarted: func(e imds.Event, _ time.Time) {
			log.Warn("Freeze for this VM started: the pause is expected now", logging.Msg(logging.MsgScheduledEvent),
				"event_type", printable.Clip(string(e.Type), maxIMDSWord), "event_id", printable.Clip(e.ID, maxIMDSWord),
				"event_status", printable.Clip(string(e.Status), maxIMDSWord), "description", printable.Clip(e.Description, maxIMDSText))
		},
		OnFreezeEvents: func([]imds.Event) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	}
	w, err := imds.NewWatcher(imds.WatcherConfig{Client: client, Observer: imds.Multi(corr, obs), Logger: log.With("component", "imds"),
		Clock: clk, PollInterval: cfg.IMDS.PollInterval, IdlePollInterval: cfg.IMDS.IdlePoll, ResourceName: cfg.IMDS.ResourceName,
		ApproveFreeze: cfg.IMDS.ApproveFreeze})
	if err != nil {
		return FreezeWatch{}, err
	}
	go w.Run(ctx)
	fw.IMDS = true
	return fw, nil
}

// paused records a VM pause and schedules the post-resume pipeline: wait
// settleDelay (the VF may be removed and re-added around the pause), check,
// repair, verify, and time resume → verified when the resume time is known.
func (d *Daemon) paused(r freeze.Resume) {
	d.d.Metrics.IncVMPause(r.Source)
	p := state.Pause{At: r.At, Seconds: r.Length.Seconds(), Source: string(r.Source), EventID: printable.Clip(r.EventID, maxIMDSWord),
		Description: printable.Clip(r.Description, maxIMDSText)}
	if p.At.IsZero() {
		p.At = d.d.Clock.Now() // imds fallback: when the event left the list
	}
	d.mu.Lock()
	d.st.Pauses = append(d.st.Pauses, p)
	if n := len(d.st.Pauses); n > state.MaxActions {
		d.st.Pauses = append([]state.Pause(nil), d.st.Pauses[n-state.MaxActions:]...)
	}
	id := len(d.st.Pauses) - 1
	d.mu.Unlock()
	d.log.Warn(fmt.Sprintf("VM pause of %.1fs detected (%s): checking the IRQ spread after %s", r.Length.Seconds(), string(r.Source), d.cfg.IRQ.SettleDelay),
		logging.Msg(logging.MsgVMPause), "source", string(r.Source), "pause_seconds", r.Length.Seconds(),
		"event_id", p.EventID, "description", p.Description)
	d.schedule(pending{reason: "vm pause (" + string(r.Source) + ")", resume: r.At, pauses: []int{id}})
	d.writeState()
}

// freezeChanged copies this VM's Freeze events into the state file and
// STATUS=, when what they record changed.
func (d *Daemon) freezeChanged() {
	if d.d.FreezeActive == nil {
		return
	}
	evs := d.d.FreezeActive()
	list := make([]state.FreezeEvent, 0, min(len(evs), maxFreezeShown))
	for _, e := range evs[:min(len(evs), maxFreezeShown)] {
		list = append(list, state.FreezeEvent{EventID: printable.Clip(e.ID, maxIMDSWord), Status: printable.Clip(string(e.Status), maxIMDSWord),
			NotBefore: printable.Clip(e.NotBeforeRaw, maxIMDSWord), Description: printable.Clip(e.Description, maxIMDSText)})
	}
	d.mu.Lock()
	same := slices.Equal(d.st.Freeze, list)
	if !same {
		d.st.Freeze = list
	}
	d.mu.Unlock()
	if same {
		return // IMDS changed what the file does not record: no rewrite
	}
	d.writeState()
	d.status()
}

// What IMDS sends reaches people (journal, STATUS=, status) escaped and
// clipped: an id, status or date is a word, a description a line.
const (
	maxIMDSWord    = 64
	maxIMDSText    = 200
	maxFreezeShown = 8 // Freeze events of this VM kept in the state file and STATUS=
)
