package install

import (
	"context"
	"fmt"
	"os"
	"strconv"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// HostSystemd is the host's systemd over the host's system bus socket
// (under the host root: the pod has no bus of its own).
type HostSystemd struct {
	conn *sddbus.Conn
}

// DialHost connects to the system bus at socket.
func DialHost(ctx context.Context, socket string) (*HostSystemd, error) {
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		bus, err := godbus.Dial("unix:path="+socket, godbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := bus.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			bus.Close()
			return nil, err
		}
		if err := bus.Hello(); err != nil {
			bus.Close()
			return nil, err
		}
		return bus, nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the host's systemd over %s: %w", socket, err)
	}
	return &HostSystemd{conn: conn}, nil
}

// Close closes the connection.
func (s *HostSystemd) Close() { s.conn.Close() }

// DaemonReload implements Systemd.
func (s *HostSystemd) DaemonReload(ctx context.Context) error { return s.conn.ReloadContext(ctx) }

// Enable implements Systemd.
func (s *HostSystemd) Enable(ctx context.Context, unit string) error {
	_, _, err := s.conn.EnableUnitFilesContext(ctx, []string{unit}, false, false)
	return err
}

// Disable implements Systemd.
func (s *HostSystemd) Disable(ctx context.Context, unit string) error {
	_, err := s.conn.DisableUnitFilesContext(ctx, []string{unit}, false)
	return err
}

func (s *HostSystemd) job(ctx context.Context, what, unit string, start func(context.Context, string, string, chan<- string) (int, error)) error {
	done := make(chan string, 1)
	if _, err := start(ctx, unit, "replace", done); err != nil {
		return err
	}
	select {
	case r := <-done:
		if r != "done" {
			return fmt.Errorf("%s %s: job %s", what, unit, r)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start implements Systemd.
func (s *HostSystemd) Start(ctx context.Context, unit string) error {
	return s.job(ctx, "start", unit, s.conn.StartUnitContext)
}

// Restart implements Systemd.
func (s *HostSystemd) Restart(ctx context.Context, unit string) error {
	return s.job(ctx, "restart", unit, s.conn.RestartUnitContext)
}

// Stop implements Systemd.
func (s *HostSystemd) Stop(ctx context.Context, unit string) error {
	return s.job(ctx, "stop", unit, s.conn.StopUnitContext)
}

// Reload implements Systemd: the unit's ExecReload (config validate, then
// SIGHUP).
func (s *HostSystemd) Reload(ctx context.Context, unit string) error {
	return s.job(ctx, "reload", unit, s.conn.ReloadUnitContext)
}

// State implements Systemd.
func (s *HostSystemd) State(ctx context.Context, unit string) (string, uint32, error) {
	p, err := s.conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return "", 0, err
	}
	active, _ := p.Value.Value().(string)
	pp, err := s.conn.GetServicePropertyContext(ctx, unit, "MainPID")
	if err != nil {
		return active, 0, err
	}
	pid, _ := pp.Value.Value().(uint32)
	return active, pid, nil
}
