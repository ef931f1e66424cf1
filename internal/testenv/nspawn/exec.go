package nspawn

// Talking to the running container: commands, its journal, its systemd over
// D-Bus.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Exec runs a command inside the container (all of the leader's namespaces,
// its root and its working directory, via nsenter) and returns its stdout. The
// error of a failed command carries its exit status and stderr.
func (c *Container) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("nspawn: Exec: no command")
	}
	nsArgs := append([]string{"--target", strconv.Itoa(c.leader), "--all", "--root", "--wd", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsArgs...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_PAGER=", "PAGER=cat", "SYSTEMD_COLORS=0",
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nspawn: %s in %s: %w: %s",
			strings.Join(args, " "), c.name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Systemd returns a go-systemd connection to the container's system bus (see
// BusAddress), once systemd answers on it. ctx bounds the wait, which retries
// while the bus or systemd's place on it is not there, as after a restart of
// D-Bus. The connection stays open after ctx ends; Close it, or Shutdown does.
func (c *Container) Systemd(ctx context.Context) (*sddbus.Conn, error) {
	var lastErr error
	for {
		conn, err := c.dialSystemd(ctx)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			return conn, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nspawn: connect to systemd at %s: %w (last error: %v)", c.BusAddress(), ctx.Err(), lastErr)
		case <-c.done:
			return nil, fmt.Errorf("nspawn: connect to systemd: container %s is gone", c.name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Container) dialSystemd(ctx context.Context) (*sddbus.Conn, error) {
	type result struct {
		conn *sddbus.Conn
		err  error
	}
	ch := make(chan result, 1)
	addr := c.BusAddress()
	go func() {
		conn, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return dialBus(addr) })
		if err == nil {
			// systemd answers: it is on the bus.
			if _, err = conn.GetUnitPropertyContext(ctx, "init.scope", "ActiveState"); err != nil {
				conn.Close()
				conn = nil
			}
		}
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// dialBus opens an authenticated connection (EXTERNAL, this process's uid) to
// the bus at addr and says Hello.
func dialBus(addr string) (*dbus.Conn, error) {
	conn, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Journal returns the journal entries of unit inside the container
// (`journalctl -u unit -o json`), one map of fields per entry. A binary field
// (a JSON array of bytes) becomes its bytes as a string; a field with several
// values becomes the values joined by newlines.
func (c *Container) Journal(ctx context.Context, unit string) ([]map[string]string, error) {
	out, err := c.Exec(ctx, "journalctl", "--no-pager", "--quiet", "--output=json", "--unit="+unit)
	if err != nil {
		return nil, err
	}
	var entries []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("nspawn: journal of %s: %w", unit, err)
		}
		e := make(map[string]string, len(raw))
		for k, v := range raw {
			e[k] = journalValue(v)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

func journalValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		b := make([]byte, len(nums))
		for i, n := range nums {
			b[i] = byte(n)
		}
		return string(b)
	}
	var multi []json.RawMessage
	if json.Unmarshal(v, &multi) == nil {
		vals := make([]string, len(multi))
		for i, m := range multi {
			vals[i] = journalValue(m)
		}
		return strings.Join(vals, "\n")
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}
