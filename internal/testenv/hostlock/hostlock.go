// Package hostlock serializes the tests that take a whole-host resource (the
// one nspawn container, the one VM) across goroutines and across the test
// binaries `go test` runs in parallel: a mutex per name inside the process and
// an flock(2)'d file per name under /run/lock. Used only by tests.
package hostlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	mu    sync.Mutex
	names = map[string]*sync.Mutex{}
)

// Dir is where the lock files live.
var Dir = func() string {
	if fi, err := os.Stat("/run/lock"); err == nil && fi.IsDir() {
		return "/run/lock"
	}
	return os.TempDir()
}()

func local(name string) *sync.Mutex {
	mu.Lock()
	defer mu.Unlock()
	m, ok := names[name]
	if !ok {
		m = &sync.Mutex{}
		names[name] = m
	}
	return m
}

// Acquire takes the lock called name, polling the lock file every poll, until
// ctx ends. The returned unlock may be called more than once.
func Acquire(ctx context.Context, name string, poll time.Duration) (unlock func(), err error) {
	m := local(name)
	locked := make(chan struct{})
	go func() {
		m.Lock()
		close(locked)
	}()
	select {
	case <-locked:
	case <-ctx.Done():
		go func() { <-locked; m.Unlock() }()
		return nil, fmt.Errorf("wait for %s held in this process: %w", name, ctx.Err())
	}
	path := filepath.Join(Dir, "nodekeeper-test-"+name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		m.Unlock()
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			m.Unlock()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			m.Unlock()
			return nil, fmt.Errorf("wait for %s held by another process (%s): %w", name, path, ctx.Err())
		case <-time.After(poll):
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Close()
			m.Unlock()
		})
	}, nil
}
