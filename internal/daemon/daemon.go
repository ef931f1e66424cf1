// Package daemon owns `nodekeeper run`: it wires triggers (timers, unit
// changes, NIC link events, VM pauses) to the checks, passes every proposed
// repair through the policy gate, performs and verifies it, and reports all of
// it — journal, metrics, sd_notify and the state file. It keeps no global
// state; everything it touches comes in through Deps.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/buildinfo"
	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/imds"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

// Notifier is the daemon's side of sd_notify.
type Notifier interface {
	Ready() error
	Status(string) error
	Stopping() error
	Watchdog() error
	WatchdogInterval() (time.Duration, bool)
}

// Deps is everything the daemon uses.
type Deps struct {
	FS         *hostfs.FS
	Config     config.Config
	ConfigFile string // re-read on Reload
	DryRun     bool   // --dry-run: ORed with config's dryRun
	Log        *slog.Logger
	Metrics    *metrics.Metrics
	Notifier   Notifier
	Clock      clock.Clock
	Links      irq.LinkLister
	// DialUnits connects to systemd; the daemon retries it when it fails and
	// keeps working (checks, metrics) without D-Bus meanwhile.
	DialUnits func(ctx context.Context) (systemd.Units, error)
	// LinkEvents delivers the names of interfaces that appeared, changed or
	// went; nil when the host's netlink is not watched (fixture roots).
	LinkEvents <-chan string
	// Resumes delivers one Resume per VM pause (nil: none are watched);
	// FreezeActive and FreezeChanged show this VM's scheduled Freeze events.
	Resumes       <-chan freeze.Resume
	FreezeActive  func() []imds.Event
	FreezeChanged <-chan struct{}
	// StatePath is the state file; "" disables it.
	StatePath string
	// VerifyEvery is the pause between verification checks (default 1s).
	VerifyEvery time.Duration
	// HandlesSignal tells whether a process has a handler for a signal
	// (default: FS.CatchesSignal, from /proc/<pid>/status).
	HandlesSignal func(pid int, sig syscall.Signal) (bool, error)
	// LoadConfig reads the configuration on reload (default config.Load of
	// ConfigFile). It runs off the main loop, within ReloadTimeout.
	LoadConfig func() (config.Config, error)
	// ReloadTimeout bounds a reload (default 10s): a file that blocks must
	// not keep the loop, or SIGTERM, waiting.
	ReloadTimeout time.Duration
}

// Daemon is one running `nodekeeper run`.
type Daemon struct {
	d        Deps
	cfg      config.Config
	log      *slog.Logger
	checker  *irq.Checker // main loop only
	gate     *policy.Gate
	units    systemd.Units
	unitsErr error

	mu   sync.Mutex // guards st and the fields the repair goroutine reports
	st   *state.State
	wg   sync.WaitGroup
	done chan repairResult
	last struct {
		status check.Status
		skip   string
		why    string
	}
	pend  *pending
	ready bool
	busy  bool // a repair goroutine is running (main loop only)
	// waiting are VM pauses whose check found the running repair: they take
	// its outcome.
	waiting  []pending
	kube     kubeletState
	reg      registry                        // the periodic watchers (package watch)
	sym      symptomSource                   // the symptom watch, as the kubelet pin reads it; nil when off
	lat      latencySource                   // the NET_RX latency watch, as the kubelet pin reads it; nil when off
	extra    []func(watch.Env) watch.Watcher // more watchers, for tests of the registry
	rep      *irq.Report                     // the latest IRQ report (main loop only)
	errs     map[metrics.Component]string    // the last error logged per component (main loop only)
	stateErr string                          // the last state file write error (guarded by mu)
}

type pending struct {
	at     time.Time
	reason string
	resume time.Time // the earliest resume of the VM pauses this check follows, for pause_to_verified
	pauses []int     // their indexes in state.Pauses
}

// New builds a daemon from deps; Run starts it.
func New(deps Deps) *Daemon {
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if deps.HandlesSignal == nil {
		deps.HandlesSignal = deps.FS.CatchesSignal
	}
	if deps.VerifyEvery <= 0 {
		deps.VerifyEvery = time.Second
	}
	if deps.LoadConfig == nil {
		file := deps.ConfigFile
		deps.LoadConfig = func() (config.Config, error) { return config.Load(file) }
	}
	if deps.ReloadTimeout <= 0 {
		deps.ReloadTimeout = 10 * time.Second
	}
	d := &Daemon{d: deps, cfg: deps.Config, log: deps.Log, done: make(chan repairResult, 4)}
	deps.Metrics.DeclareCheck(irq.Name) // the watchers' checks and actions are declared as they are registered
	deps.Metrics.DeclareCheck(kubelet.Name)
	for _, a := range []policy.Action{irqbalance.ActionRestart, irqbalance.ActionSighup, irq.ActionSpread, kubelet.ActionPin} {
		deps.Metrics.DeclareAction(a, policy.Success, policy.Failure, policy.VerifyTimeout) // verified repairs
	}
	deps.Metrics.DeclareAction(kubelet.ActionUnpin, policy.Success, policy.Failure)
	d.checker = d.newChecker()
	d.gate = policy.NewGate(d.limits())
	d.kube.gate = policy.NewGate(policy.Limits{MaxPerHour: 12, BackoffBase: time.Minute, BackoffMax: 30 * time.Minute})
	d.kube.mode = kubelet.DetectMode(deps.FS)
	now := deps.Clock.Now()
	d.st = &state.State{Version: buildinfo.String(), PID: os.Getpid(), Started: now, DryRun: d.dryRun(),
		Checks: map[check.Name]state.Check{}}
	if deps.StatePath != "" {
		if old, err := state.Read(deps.StatePath); err == nil && old != nil {
			d.checker.SeedVFSeen(old.VFSeen) // VF history survives a daemon restart
			d.st.Actions, d.st.Pauses, d.st.Kubelet = old.Actions, old.Pauses, old.Kubelet
		}
	}
	return d
}

func (d *Daemon) dryRun() bool { return d.d.DryRun || d.cfg.DryRun }

func (d *Daemon) limits() policy.Limits {
	return policy.Limits{Cooldown: d.cfg.IRQ.Cooldown, MaxPerHour: d.cfg.IRQ.MaxRepairsPerHour,
		BackoffBase: max(d.cfg.IRQ.Cooldown, time.Minute), BackoffMax: time.Hour}
}

func (d *Daemon) newChecker() *irq.Checker {
	return irq.NewChecker(d.d.FS, d.d.Links, irq.OptionsFrom(d.cfg), d.d.Clock.Now)
}

// Run runs until ctx ends. reload delivers SIGHUPs. It returns nil on a clean
// shutdown and an error only when it cannot start (e.g. the metrics address
// is taken).
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.mu.Lock()
	d.st.Stopped = time.Time{} // running (again)
	d.mu.Unlock()
	m := d.d.Metrics
	m.SetBuildInfo(buildinfo.String())
	srv, err := metrics.Serve(ctx, d.cfg.Metrics.Listen, m, func() error { return nil }, d.log.With("component", "metrics"))
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	if srv != nil {
		d.log.Info("metrics listening", "addr", srv.Addr().String())
	}
	d.readIrqbalanceVersion()
	changes := d.connectUnits(ctx)

	d.startWatchers()
	d.readReserved()
	d.startTicking(ctx) // every watcher's first tick (the symptoms' first sample), then one per interval
	defer d.stopTicking()
	d.runCheck(ctx, pending{reason: "start"})

	clk := d.d.Clock
	ticker := clk.NewTicker(d.cfg.IRQ.CheckInterval)
	defer ticker.Stop()
	var wdC <-chan time.Time
	if iv, ok := d.d.Notifier.WatchdogInterval(); ok {
		wd := clk.NewTicker(iv / 2)
		defer wd.Stop()
		wdC = wd.C()
	}
	d.ready = true
	d.notified(d.d.Notifier.Ready())
	d.log.Info("nodekeeper started", "version", buildinfo.String(), "dry_run", d.dryRun())
	settle := clk.NewTimer(time.Hour)
	settle.Stop()
	var reloading <-chan reloadResult
	var reloadDeadline clock.Timer
	var dialRetry <-chan time.Time
	if d.units == nil {
		t := clk.NewTimer(30 * time.Second)
		defer t.Stop()
		dialRetry = t.C()
	}
	for {
		if d.pend != nil {
			settle.Reset(max(0, d.pend.at.Sub(clk.Now())))
		}
		select {
		case <-ctx.Done():
			return d.shutdown(srv)
		case <-ticker.C():
			d.runCheck(ctx, pending{reason: reasonTimer})
		case <-settle.C():
			if p := d.pend; p != nil && !clk.Now().Before(p.at) {
				d.pend = nil
				d.runCheck(ctx, *p)
			}
		case c, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			d.unitChanged(ctx, c)
		case name, ok := <-d.d.LinkEvents:
			if !ok {
				d.d.LinkEvents = nil
				continue
			}
			d.log.Info("NIC changed: checking after the settle delay", "interface", name, "settle", d.cfg.IRQ.SettleDelay)
			d.schedule(pending{reason: "link " + name})
		case r := <-d.d.Resumes:
			d.paused(r)
		case <-d.d.FreezeChanged:
			d.freezeChanged()
		case e := <-d.reg.due:
			d.tick(ctx, e)
		case p := <-d.reg.posts:
			d.recordWatch(ctx, p.e, p.f(clk.Now()))
		case <-reload:
			if reloading == nil {
				reloading = d.startReload()
				reloadDeadline = clk.NewTimer(d.d.ReloadTimeout)
			}
		case res := <-reloading:
			reloading = nil
			reloadDeadline.Stop()
			old := d.cfg
			if d.reload(res) {
				resetIfChanged(ticker, old.IRQ.CheckInterval, d.cfg.IRQ.CheckInterval)
			}
		case <-timerC(reloadDeadline):
			if reloading != nil {
				reloading = nil // a late result is dropped (the channel is buffered)
				d.errorOnce(metrics.ComponentReload, "configuration reload did not finish within "+d.d.ReloadTimeout.String()+
					"; keeping the running configuration", logging.Msg(logging.MsgConfigReloadFailed), "file", d.d.ConfigFile)
			}
		case r := <-d.done:
			d.finishRepair(r)
		case <-wdC:
			d.notified(d.d.Notifier.Watchdog()) // the loop got here: it makes progress
		case <-dialRetry:
			dialRetry = nil
			if changes = d.connectUnits(ctx); d.units == nil {
				t := clk.NewTimer(30 * time.Second)
				dialRetry = t.C()
			}
		}
	}
}

// Trigger asks for an IRQ check after the settle delay, e.g. after a VM
// pause (resume is then when the VM came back). Safe from any goroutine only
// through TriggerChan; inside the loop, schedule is used.
func (d *Daemon) schedule(p pending) {
	p.at = d.d.Clock.Now().Add(d.cfg.IRQ.SettleDelay)
	if d.pend != nil {
		// One check serves every trigger within the window; the earliest
		// resume time is kept so the pause is still timed.
		if !d.pend.resume.IsZero() {
			p.resume = d.pend.resume
		}
		p.pauses = append(d.pend.pauses, p.pauses...)
		p.reason = d.pend.reason + ", " + p.reason
	}
	d.pend = &p
}

func (d *Daemon) shutdown(srv *metrics.Server) error {
	d.notified(d.d.Notifier.Stopping())
	d.log.Info("stopping")
	waited := make(chan struct{})
	go func() { d.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-d.d.Clock.NewTimer(4 * time.Second).C():
		d.log.Warn("a repair was still running at shutdown; leaving it")
	}
	if srv != nil {
		if err := srv.Wait(); err != nil {
			d.log.Warn("the metrics listener ended with an error", "err", err)
		}
	}
	d.mu.Lock()
	d.st.Stopped = d.d.Clock.Now()
	d.mu.Unlock()
	d.writeState()
	return nil
}

func (d *Daemon) connectUnits(ctx context.Context) <-chan systemd.Change {
	if d.d.DialUnits == nil {
		return nil
	}
	u, err := d.d.DialUnits(ctx)
	if err != nil {
		if d.unitsErr == nil {
			d.log.Warn("cannot reach systemd over D-Bus: IRQ checks go on, repairs through irqbalance wait; retrying every 30s",
				logging.Msg(logging.MsgDBusLost), "err", err)
		}
		d.unitsErr = err
		return nil
	}
	if d.unitsErr != nil {
		d.log.Info("systemd D-Bus connection established")
	}
	d.units, d.unitsErr = u, nil
	ch, err := u.Watch(ctx, irqbalance.Unit, d.cfg.Kubelet.Unit)
	if err != nil {
		d.log.Warn("cannot watch irqbalance.service; restarts by others are noticed by the periodic check only", "err", err)
		return nil
	}
	if st, err := u.Unit(ctx, irqbalance.Unit); err == nil {
		d.mu.Lock()
		d.st.Irqbalance.ActiveState, d.st.Irqbalance.MainPID = st.ActiveState, st.MainPID
		d.mu.Unlock()
	}
	return ch
}

// unitChanged re-checks after irqbalance was (re)started by anyone, and
// follows kubelet to its new process.
func (d *Daemon) unitChanged(ctx context.Context, c systemd.Change) {
	if c.Unit == d.cfg.Kubelet.Unit {
		if c.MainPID != 0 && c.MainPID != d.kube.pid {
			d.kube.pid = c.MainPID
			d.kubeletRestarted(ctx)
		}
		return
	}
	if c.Unit != irqbalance.Unit {
		return
	}
	d.mu.Lock()
	prev := d.st.Irqbalance.MainPID
	d.st.Irqbalance.ActiveState, d.st.Irqbalance.MainPID = c.ActiveState, c.MainPID
	ours := d.busy
	d.mu.Unlock()
	if c.Reconnected {
		d.log.Info("D-Bus connection re-established; re-reading irqbalance's state", "unit", c.Unit)
	}
	if c.MainPID != 0 && c.MainPID != prev && !ours {
		d.log.Info("irqbalance started with a new main process: re-checking after it settles",
			"unit", c.Unit, "main_pid", c.MainPID)
		d.schedule(pending{reason: "irqbalance restarted"})
	}
}

type reloadResult struct {
	cfg config.Config
	err error
}

// startReload reads the configuration off the main loop.
func (d *Daemon) startReload() <-chan reloadResult {
	ch := make(chan reloadResult, 1)
	go func() {
		cfg, err := d.d.LoadConfig()
		ch <- reloadResult{cfg, err}
	}()
	return ch
}

// resetIfChanged resets a ticker only when its interval changed: a reload
// more often than the interval must not keep the periodic work from running.
func resetIfChanged(t clock.Ticker, old, cur time.Duration) {
	if old != cur {
		t.Reset(cur)
	}
}

// timerC is t's channel, or nil (never ready) for no timer.
func timerC(t clock.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C()
}

// restartOnly are the settings a reload does not apply: they are read once at
// start. A reload that changes one keeps the running value and says so by
// name; the rest of the reload applies.
var restartOnly = []struct {
	name    string
	changed func(a, b config.Config) bool
	keep    func(dst *config.Config, src config.Config)
}{
	{"metrics.listen", func(a, b config.Config) bool { return a.Metrics != b.Metrics },
		func(dst *config.Config, src config.Config) { dst.Metrics = src.Metrics }},
	{"imds", func(a, b config.Config) bool { return a.IMDS != b.IMDS },
		func(dst *config.Config, src config.Config) { dst.IMDS = src.IMDS }},
	{"pauseDetector", func(a, b config.Config) bool { return a.PauseDetector != b.PauseDetector },
		func(dst *config.Config, src config.Config) { dst.PauseDetector = src.PauseDetector }},
	{"kubelet.unit", func(a, b config.Config) bool { return a.Kubelet.Unit != b.Kubelet.Unit },
		func(dst *config.Config, src config.Config) { dst.Kubelet.Unit = src.Kubelet.Unit }},
	{"snat.enabled", func(a, b config.Config) bool { return a.SNAT.Enabled != b.SNAT.Enabled },
		func(dst *config.Config, src config.Config) { dst.SNAT.Enabled = src.SNAT.Enabled }},
	{"dns.enabled", func(a, b config.Config) bool { return a.DNS.Enabled != b.DNS.Enabled },
		func(dst *config.Config, src config.Config) { dst.DNS.Enabled = src.DNS.Enabled }},
	{"conntrack.enabled", func(a, b config.Config) bool { return a.Conntrack.Enabled != b.Conntrack.Enabled },
		func(dst *config.Config, src config.Config) { dst.Conntrack.Enabled = src.Conntrack.Enabled }},
	{"latency.enabled", func(a, b config.Config) bool { return a.Latency.Enabled != b.Latency.Enabled },
		func(dst *config.Config, src config.Config) { dst.Latency.Enabled = src.Latency.Enabled }},
}

// reload applies a configuration read by startReload; it reports whether
// anything was applied.
func (d *Daemon) reload(res reloadResult) bool {
	if res.err != nil {
		d.log.Error("configuration reload failed; keeping the running configuration",
			logging.Msg(logging.MsgConfigReloadFailed), "err", res.err)
		d.d.Metrics.IncError(metrics.ComponentReload)
		return false
	}
	cfg := res.cfg
	var kept []string
	for _, k := range restartOnly {
		if k.changed(cfg, d.cfg) {
			kept = append(kept, k.name)
			k.keep(&cfg, d.cfg)
		}
	}
	if len(kept) > 0 {
		d.log.Warn("configuration reloaded except "+strings.Join(kept, ", ")+
			": these are read at start only; restart nodekeeper to apply them", "keys", strings.Join(kept, ","))
	}
	for _, w := range cfg.Warnings() {
		d.log.Warn("configuration: " + w)
	}
	d.cfg = cfg
	seen := d.checker.VFSeen()
	d.checker = d.newChecker()
	d.checker.SeedVFSeen(seen)
	d.gate.SetLimits(d.limits())
	d.readReserved()
	d.reconfigureWatchers(cfg)
	d.log.Info("configuration reloaded", "file", d.d.ConfigFile, "dry_run", d.dryRun())
	return true
}

func (d *Daemon) readIrqbalanceVersion() {
	inst, err := irqbalance.InstalledVersion(d.d.FS)
	if err != nil {
		d.log.Warn("cannot read the installed irqbalance version", "err", err)
		return
	}
	buggy, why := irqbalance.KnownBuggy(inst.Version)
	d.st.Irqbalance.Version, d.st.Irqbalance.Source = inst.Version, inst.Source
	d.st.Irqbalance.KnownBuggy, d.st.Irqbalance.Why = buggy, why
	d.d.Metrics.SetIrqbalanceKnownBuggy(buggy)
	if buggy {
		d.log.Warn(why, logging.Msg(logging.MsgIrqbalanceKnownBuggy), "version", inst.Version)
	}
}

// Reasons of the periodic IRQ check (the TRIGGER of what it logs).
const (
	reasonTimer        = "timer"
	reasonTimerRecheck = "timer (re-check)"
)

// runCheck runs the IRQ check in the main loop and, on a problem, proposes
// a repair.
func (d *Daemon) runCheck(ctx context.Context, p pending) {
	if ctx.Err() != nil {
		return // stopping: a check cut short is no verdict
	}
	start := d.d.Clock.Now()
	rep := d.checker.Run(ctx)
	if ctx.Err() != nil {
		return
	}
	d.d.Metrics.ObserveCheckDuration(irq.Name, d.d.Clock.Now().Sub(start))
	if p.reason == reasonTimer && rep.Status == check.Problem && d.last.status != check.Problem && d.cfg.IRQ.SettleDelay > 0 {
		// A periodic check that fell due during a VM pause runs the moment
		// the VM resumes, before the pause detector reports the pause. A
		// new problem it sees is judged after irq.settleDelay, as after any
		// resume: the pause's own check, when one comes, takes it over.
		if d.pend == nil {
			d.schedule(pending{reason: reasonTimerRecheck})
		}
		return
	}
	d.record(rep)
	if rep.Status == check.Problem && rep.Status != d.last.status {
		d.log.Warn("IRQ spread problem: "+rep.Message, logging.Msg(logging.MsgIRQSpreadProblem),
			"check", string(irq.Name), "interface", firstProblem(rep), "cpus", rep.CPUsUsed.List(), "trigger", p.reason)
	} else if rep.Status != d.last.status {
		d.log.Info("IRQ check: "+rep.Message, "check", string(irq.Name), "status", string(rep.Status), "trigger", p.reason)
	}
	d.last.status = rep.Status
	if rep.Status != check.Unknown {
		d.rep = rep
		d.reconcileKubelet(ctx, rep, p.reason)
	}
	switch {
	case rep.Status == check.OK && len(p.pauses) > 0:
		d.pauseVerified(p, freeze.OutcomeAlreadyOK, d.d.Clock.Now())
	case rep.Status == check.Problem:
		d.proposeRepair(ctx, rep, p)
	}
	d.status()
}

func firstProblem(rep *irq.Report) string {
	for _, v := range rep.Interfaces {
		if v.Status == check.Problem {
			return v.Interface
		}
	}
	return ""
}

// record puts a report into metrics and the state file.
func (d *Daemon) record(rep *irq.Report) {
	m := d.d.Metrics
	m.SetCheckStatus(irq.Name, rep.Status)
	if rep.Status != check.Unknown {
		irqs := make([]metrics.NICIRQ, 0, len(rep.NICIRQs))
		for _, q := range rep.NICIRQs {
			irqs = append(irqs, metrics.NICIRQ{Interface: q.Interface, Queue: q.Queue, IRQ: q.IRQ, CPU: q.CPU})
		}
		m.SetNICIRQs(irqs)
		chans := make([]metrics.VMBusChannel, 0, len(rep.VMBusChannels))
		for _, c := range rep.VMBusChannels {
			chans = append(chans, metrics.VMBusChannel{Interface: c.Interface, Channel: c.Channel, CPU: c.CPU})
		}
		m.SetVMBusChannels(chans)
	}
	vf := d.checker.VFSeen()
	d.storeCheck(irq.Name, state.Check{Time: d.d.Clock.Now(), Interval: state.Duration(d.cfg.IRQ.CheckInterval),
		Status: string(rep.Status), Message: rep.Message}, rep, func(st *state.State) { st.VFSeen = vf })
}

func (d *Daemon) writeState() {
	if d.d.StatePath == "" {
		return
	}
	d.mu.Lock()
	d.st.Updated = d.d.Clock.Now()
	err := state.Write(d.d.StatePath, d.st)
	msg, prev := "", d.stateErr
	if err != nil {
		msg = err.Error()
	}
	d.stateErr = msg
	d.mu.Unlock()
	switch {
	case err != nil:
		d.d.Metrics.IncError(metrics.ComponentState)
		if msg != prev { // once per reason: a read-only /run must not flood the journal
			d.log.Warn("cannot write the state file: status and check see stale results", "path", d.d.StatePath, "err", err)
		}
	case prev != "":
		d.log.Info("the state file is written again", "path", d.d.StatePath)
	}
}

// status sends a STATUS= line.
func (d *Daemon) status() {
	d.mu.Lock()
	c := d.st.Checks[irq.Name]
	d.mu.Unlock()
	s := "IRQ spread " + c.Status + ": " + c.Message
	if d.busy {
		s = "repairing IRQ spread: " + c.Message
	}
	d.mu.Lock()
	for _, e := range d.st.Freeze {
		s = fmt.Sprintf("Freeze %s %s for this VM; ", e.EventID, e.Status) + s
	}
	d.mu.Unlock()
	if d.dryRun() {
		s += " (dry run)"
	}
	d.notified(d.d.Notifier.Status(s))
}
