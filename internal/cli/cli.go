// Package cli owns nodekeeper's command line: the subcommands of DESIGN.md's
// contract, their flags, output formats and exit codes. main only wires the
// process (signals, os.Args, os.Exit) to Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/buildinfo"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Env is what a command needs from the process.
type Env struct {
	Stdout, Stderr io.Writer
	// IsTerminal reports whether Stdout is a terminal (colour in status).
	IsTerminal bool
	Getenv     func(string) string
	// Hangups delivers SIGHUP to `run` when the process subscribed to it
	// before anything else (a SIGHUP in the first milliseconds must reload,
	// not kill the daemon); nil: run subscribes itself.
	Hangups <-chan os.Signal
	// Clock times the checks' samples and judges the daemon's results
	// fresh; nil: the real clock.
	Clock clock.Clock
}

func (e Env) clock() clock.Clock {
	if e.Clock == nil {
		return clock.Real{}
	}
	return e.Clock
}

// globals are the flags every subcommand accepts.
type globals struct {
	paths      hostfs.Paths
	configFile string
	logLevel   string
	logFormat  string
}

func (g *globals) register(fs *flag.FlagSet) {
	d := hostfs.DefaultPaths()
	fs.StringVar(&g.paths.Proc, "path.procfs", d.Proc, "procfs mount point")
	fs.StringVar(&g.paths.Sys, "path.sysfs", d.Sys, "sysfs mount point")
	fs.StringVar(&g.paths.Cgroup, "path.cgroupfs", d.Cgroup, "cgroup file system mount point")
	fs.StringVar(&g.paths.Root, "path.rootfs", d.Root, "root file system: where /etc, /var and /run files are read")
	fs.StringVar(&g.configFile, "config", config.DefaultPath, "main configuration file (config.d/*.yaml beside it override it)")
	fs.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&g.logFormat, "log-format", "text", "text or json (on stderr; under journald, native journal entries)")
}

func (g *globals) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(g.logLevel)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	return l, nil
}

const usage = `nodekeeper keeps a Kubernetes node's network receive path healthy.

Usage:
  nodekeeper run      [--config FILE] [--dry-run]       the daemon
  nodekeeper check    [irq|kubelet|compaction|softirq|snat|dns|conntrack|latency|all] [--output text|json] [--window 1s]
  nodekeeper top      [snat] [--by pod|destination] [--output text|json] [--limit 10]  who uses the SNAT ports now
  nodekeeper config validate [FILE]
  nodekeeper undo     [--force]                         remove nodekeeper's kubelet pin (IRQ masks are left)
  nodekeeper status   [--output text|json] [--window 1s]  the per-CPU picture
  nodekeeper install  --host-root DIR [--package FILE] [--config-from DIR] [--uninstall] [--ready] [--once] [--record FILE]
                                                        from a privileged pod: install onto the host (managed pools)
  nodekeeper version

Global flags: --path.procfs DIR --path.sysfs DIR --path.cgroupfs DIR --path.rootfs DIR
              --config FILE --log-level LEVEL --log-format text|json
Exit codes of check: 0 ok, 1 problem, 2 unknown.
`

// Main runs one command line and returns the process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "check":
		return runCheck(ctx, rest, env)
	case "config":
		return runConfig(rest, env)
	case "version", "--version":
		fmt.Fprintf(env.Stdout, "nodekeeper %s (%s)\n", buildinfo.String(), buildinfo.GoVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	}
	if extra, ok := extraCommands[cmd]; ok {
		return extra(ctx, rest, env)
	}
	fmt.Fprintf(env.Stderr, "nodekeeper: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// extraCommands are the subcommands registered by other files of this package.
var extraCommands = map[string]func(context.Context, []string, Env) int{}

// parse parses flags anywhere among the positional arguments
// ("check irq --output json" and "check --output json irq" both work).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("nodekeeper "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// fieldErrors flattens a joined error into its parts.
func fieldErrors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

func runConfig(args []string, env Env) int {
	fs := newFlagSet("config", env)
	var g globals
	g.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) == 0 || pos[0] != "validate" || len(pos) > 2 {
		fmt.Fprintln(env.Stderr, "usage: nodekeeper config validate [FILE]")
		return 2
	}
	file := g.configFile
	if len(pos) == 2 {
		file = pos[1]
	}
	cfg, err := config.Load(file)
	if err != nil {
		for _, e := range fieldErrors(err) {
			fmt.Fprintln(env.Stderr, e)
		}
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(env.Stderr, "warning:", w)
	}
	if _, err := os.Stat(file); err != nil {
		fmt.Fprintf(env.Stdout, "%s: not present; the defaults (and any config.d overrides) are valid\n", file)
		return 0
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n", file)
	return 0
}

// loadConfig loads the configuration for a command, in one line on error.
func loadConfig(file string) (config.Config, error) {
	cfg, err := config.Load(file)
	if err != nil {
		errs := fieldErrors(err)
		msg := errs[0].Error()
		if len(errs) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(errs)-1)
		}
		return cfg, errors.New(strings.TrimSpace(msg))
	}
	return cfg, nil
}
