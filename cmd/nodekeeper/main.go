// Command nodekeeper keeps a Kubernetes node's network receive path healthy:
// NIC queue IRQs spread after VM pauses, kubelet off the net_rx CPUs, memory
// compacted when fragmented. See `nodekeeper help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodekeeper/nodekeeper/internal/cli"
	"github.com/nodekeeper/nodekeeper/internal/hup"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		IsTerminal: isTerminal(os.Stdout),
		Getenv:     os.Getenv,
		Hangups:    hup.Signals(), // subscribed before the other packages initialise
	})
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
