package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/daemon"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
)

func init() { extraCommands["run"] = runDaemon }

// runDaemon is `nodekeeper run`: the long-running service.
func runDaemon(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("run", env)
	var g globals
	g.register(fs)
	dryRun := fs.Bool("dry-run", false, "decide and log every repair, change nothing")
	bus := fs.String("dbus-address", "", "systemd's bus (default: the system bus); for tests")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return 2
	}
	level, err := g.level()
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return 2
	}
	log := logging.NewForService(g.logFormat, level)
	cfg, err := config.Load(g.configFile)
	if err != nil {
		for _, e := range fieldErrors(err) {
			fmt.Fprintln(env.Stderr, e)
		}
		log.Error("invalid configuration: not starting", "file", g.configFile)
		return 1
	}
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	h, err := hostfs.New(g.paths)
	if err != nil {
		log.Error("cannot read the host", "err", err)
		return 1
	}
	m := metrics.New()
	m.SetLogger(log.With("component", "metrics"))
	var links <-chan string
	if h.Live() {
		if links, err = daemon.WatchLinks(ctx, h, log.With("component", "netlink")); err != nil {
			log.Warn("cannot watch NIC changes over netlink; the periodic check still runs", "err", err)
		}
	}
	hup := env.Hangups
	if hup == nil {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGHUP)
		defer signal.Stop(c)
		hup = c
	}
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	clk := clock.Real{}
	fw, err := daemon.StartFreezeWatch(ctx, cfg, h, m, log, clk)
	if err != nil {
		log.Error("cannot start VM pause detection", "err", err)
		return 1
	}
	d := daemon.New(daemon.Deps{
		Resumes: fw.Resumes, FreezeActive: fw.Active, FreezeChanged: fw.Changed,
		FS: h, Config: cfg, ConfigFile: g.configFile, DryRun: *dryRun, Log: log, Metrics: m,
		Notifier: systemd.NewNotifier(), Clock: clk, Links: irq.Links(h), LinkEvents: links,
		DialUnits: func(ctx context.Context) (systemd.Units, error) {
			return systemd.Dial(ctx, *bus, log.With("component", "systemd"), clk)
		},
		StatePath: h.Root(state.RelPath),
	})
	if err := d.Run(ctx, reload); err != nil {
		log.Error("nodekeeper cannot run", "err", err)
		return 1
	}
	return 0
}
