package systemd

import (
	"context"
	"fmt"
)

// RestartReader is what RestartVerified needs.
type RestartReader interface {
	UnitReader
	Restarter
}

// RestartVerified restarts a service and checks that it came back: active,
// with a main process other than the one before. It returns the state before
// and after. A unit that does not exist is an error wrapping ErrNoSuchUnit,
// and nothing is restarted.
func RestartVerified(ctx context.Context, u RestartReader, name, mode string) (before, after UnitState, err error) {
	before, err = u.Unit(ctx, name)
	if err != nil {
		return before, after, err
	}
	if !before.Exists() {
		return before, after, fmt.Errorf("restart %s: %w (load state %s)", name, ErrNoSuchUnit, before.LoadState)
	}
	if err := u.Restart(ctx, name, mode); err != nil {
		return before, after, err
	}
	after, err = u.Unit(ctx, name)
	if err != nil {
		return before, after, err
	}
	switch {
	case !after.Active():
		return before, after, fmt.Errorf("restart %s: unit is %s/%s after the restart", name, after.ActiveState, after.SubState)
	case after.MainPID == 0:
		return before, after, fmt.Errorf("restart %s: no main process after the restart", name)
	case before.MainPID != 0 && after.MainPID == before.MainPID:
		return before, after, fmt.Errorf("restart %s: main process %d unchanged", name, after.MainPID)
	}
	return before, after, nil
}

// WaitChange reads changes from ch until one for unit satisfies ok (nil: any
// change of unit), and returns it. It fails when ctx ends or ch is closed.
func WaitChange(ctx context.Context, ch <-chan Change, unit string, ok func(Change) bool) (Change, error) {
	for {
		select {
		case <-ctx.Done():
			return Change{}, fmt.Errorf("wait for a change of %s: %w", unit, ctx.Err())
		case c, open := <-ch:
			if !open {
				return Change{}, fmt.Errorf("wait for a change of %s: watch ended", unit)
			}
			if c.Unit == unit && (ok == nil || ok(c)) {
				return c, nil
			}
		}
	}
}
