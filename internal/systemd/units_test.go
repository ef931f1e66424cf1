package systemd

import (
	"errors"
	"fmt"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func TestUnitPath(t *testing.T) {
	for name, want := range map[string]godbus.ObjectPath{
		"kubelet.service":           "/org/freedesktop/systemd1/unit/kubelet_2eservice",
		"irqbalance.service":        "/org/freedesktop/systemd1/unit/irqbalance_2eservice",
		"systemd-journald.service":  "/org/freedesktop/systemd1/unit/systemd_2djournald_2eservice",
		"getty@tty1.service":        "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice",
		"1st.service":               "/org/freedesktop/systemd1/unit/_31st_2eservice",
		"kubepods-besteffort.slice": "/org/freedesktop/systemd1/unit/kubepods_2dbesteffort_2eslice",
	} {
		got := unitPath(name)
		if got != want {
			t.Errorf("unitPath(%q) = %s, want %s", name, got, want)
		}
		if !got.IsValid() {
			t.Errorf("unitPath(%q) = %s is not a valid object path", name, got)
		}
	}
}

func TestJobError(t *testing.T) {
	tests := []struct {
		result, serviceResult string
		wantNil, startLimit   bool
		wantMsg               string
	}{
		{result: "done", wantNil: true},
		{result: "failed", serviceResult: "start-limit-hit", startLimit: true,
			wantMsg: "restart irqbalance.service: job failed (start rate limit hit)"},
		{result: "failed", serviceResult: "exit-code",
			wantMsg: "restart irqbalance.service: job failed (service result exit-code)"},
		{result: "timeout", serviceResult: "timeout",
			wantMsg: "restart irqbalance.service: job timeout (service result timeout)"},
		{result: "canceled", serviceResult: "success",
			wantMsg: "restart irqbalance.service: job canceled"},
		{result: "dependency",
			wantMsg: "restart irqbalance.service: job dependency"},
	}
	for _, tt := range tests {
		err := jobError("restart", "irqbalance.service", tt.result, tt.serviceResult)
		if tt.wantNil {
			if err != nil {
				t.Errorf("jobError(%q) = %v, want nil", tt.result, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("jobError(%q, %q) = nil", tt.result, tt.serviceResult)
		}
		if got := err.Error(); got != tt.wantMsg {
			t.Errorf("message = %q, want %q", got, tt.wantMsg)
		}
		if !errors.Is(err, ErrJobFailed) {
			t.Errorf("%v does not match ErrJobFailed", err)
		}
		if errors.Is(err, ErrStartLimit) != tt.startLimit {
			t.Errorf("errors.Is(%v, ErrStartLimit) = %v, want %v", err, !tt.startLimit, tt.startLimit)
		}
		wrapped := fmt.Errorf("repair: %w", err)
		var je *JobError
		if !errors.As(wrapped, &je) || je.Result != tt.result {
			t.Errorf("errors.As(*JobError) failed on %v", wrapped)
		}
		if errors.Is(wrapped, ErrStartLimit) != tt.startLimit {
			t.Errorf("wrapped: errors.Is(ErrStartLimit) wrong")
		}
	}
}

func TestMapError(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit nope.service not found."}}, ErrNoSuchUnit},
		{&godbus.Error{Name: "org.freedesktop.systemd1.NoSuchProcess", Body: []any{"No main process to kill"}}, ErrNoProcess},
		{godbus.Error{Name: "org.freedesktop.systemd1.UnitMasked"}, ErrMasked},
		{godbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, ErrUnavailable},
		{godbus.Error{Name: "org.freedesktop.DBus.Error.NameHasNoOwner"}, ErrUnavailable},
		{godbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}, nil},
		{errors.New("plain"), nil},
	}
	for _, tt := range tests {
		got := mapError("restart x.service", tt.err)
		if name := busErrorName(tt.err); name != "" && busErrorName(got) != name {
			t.Errorf("mapError(%v) = %v lost the D-Bus error", tt.err, got)
		}
		if busErrorName(tt.err) == "" && !errors.Is(got, tt.err) {
			t.Errorf("mapError(%v) = %v lost the original error", tt.err, got)
		}
		for _, s := range []error{ErrNoSuchUnit, ErrNoProcess, ErrMasked, ErrUnavailable} {
			if errors.Is(got, s) != (s == tt.want) {
				t.Errorf("mapError(%v) = %v: errors.Is(%v) = %v", tt.err, got, s, !(s == tt.want))
			}
		}
	}
	if mapError("x", nil) != nil {
		t.Error("mapError(nil) != nil")
	}
	// The D-Bus message stays in the text.
	got := mapError("restart nope.service", godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit nope.service not found."}})
	if want := "restart nope.service: no such unit: Unit nope.service not found."; got.Error() != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestStateFromProps(t *testing.T) {
	exit := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	unit := map[string]any{
		"Id":                    "kubelet.service",
		"LoadState":             "loaded",
		"ActiveState":           "active",
		"SubState":              "running",
		"InactiveExitTimestamp": uint64(exit.UnixMicro()),
	}
	service := map[string]any{
		"MainPID":       uint32(4242),
		"ControlGroup":  "/system.slice/kubelet.service",
		"Result":        "success",
		"NRestarts":     uint32(3),
		"AllowedCPUs":   []byte{0x0c},       // 2-3
		"EffectiveCPUs": []byte{0x0f, 0x00}, // 0-3
	}
	got := stateFromProps("kubelet.service", unit, service)
	want := UnitState{
		Name: "kubelet.service", LoadState: "loaded", ActiveState: "active", SubState: "running",
		InactiveExitTimestamp: exit, MainPID: 4242, ControlGroup: "/system.slice/kubelet.service",
		Result: "success", NRestarts: 3, AllowedCPUs: cpuset.Range(2, 3), EffectiveCPUs: cpuset.Range(0, 3),
	}
	if !got.InactiveExitTimestamp.Equal(want.InactiveExitTimestamp) {
		t.Errorf("InactiveExitTimestamp = %v, want %v", got.InactiveExitTimestamp, want.InactiveExitTimestamp)
	}
	got.InactiveExitTimestamp, want.InactiveExitTimestamp = time.Time{}, time.Time{}
	if !got.AllowedCPUs.Equal(want.AllowedCPUs) || !got.EffectiveCPUs.Equal(want.EffectiveCPUs) {
		t.Errorf("cpus = %v/%v, want %v/%v", got.AllowedCPUs, got.EffectiveCPUs, want.AllowedCPUs, want.EffectiveCPUs)
	}
	got.AllowedCPUs, got.EffectiveCPUs, want.AllowedCPUs, want.EffectiveCPUs = cpuset.Set{}, cpuset.Set{}, cpuset.Set{}, cpuset.Set{}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state\n got %+v\nwant %+v", got, want)
	}
	if !got.Exists() || !got.Active() {
		t.Errorf("Exists/Active = %v/%v", got.Exists(), got.Active())
	}

	// A unit that does not exist, and one that never left inactive.
	nf := stateFromProps("nope.service", map[string]any{"LoadState": "not-found", "ActiveState": "inactive",
		"SubState": "dead", "InactiveExitTimestamp": uint64(0)}, nil)
	if nf.Exists() || nf.Active() || !nf.InactiveExitTimestamp.IsZero() || nf.MainPID != 0 || !nf.AllowedCPUs.IsEmpty() {
		t.Errorf("not-found state = %+v", nf)
	}
	// Wrong types (a different systemd) leave fields zero rather than panic.
	odd := stateFromProps("x.service", map[string]any{"LoadState": 7, "InactiveExitTimestamp": "x"},
		map[string]any{"MainPID": int64(1), "AllowedCPUs": "0-3"})
	if odd.LoadState != "" || odd.MainPID != 0 || !odd.AllowedCPUs.IsEmpty() {
		t.Errorf("odd state = %+v", odd)
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second}
	for n, w := range want {
		if got := backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
	if got := backoff(1000); got != backoffMax {
		t.Errorf("backoff(1000) = %v", got)
	}
}

func TestParsePropertiesChanged(t *testing.T) {
	unitSig := []any{unitIface, map[string]godbus.Variant{
		"ActiveState": godbus.MakeVariant("deactivating"),
		"SubState":    godbus.MakeVariant("stop-sigterm"),
		"Job":         godbus.MakeVariant([]any{uint32(1), godbus.ObjectPath("/j/1")}),
	}, []string{}}
	u := parsePropertiesChanged("kubelet.service", unitSig)
	if !u.haveState || u.havePID || u.stateInvalid || u.ActiveState != "deactivating" || u.SubState != "stop-sigterm" || u.Unit != "kubelet.service" {
		t.Errorf("unit signal: %+v", u)
	}
	svcSig := []any{serviceIface, map[string]godbus.Variant{"MainPID": godbus.MakeVariant(uint32(77))}, []string{}}
	u = parsePropertiesChanged("kubelet.service", svcSig)
	if u.haveState || !u.havePID || u.MainPID != 77 || u.iface != serviceIface {
		t.Errorf("service signal: %+v", u)
	}
	// Invalidated without a value: to be read.
	u = parsePropertiesChanged("x.service", []any{unitIface, map[string]godbus.Variant{}, []string{"ActiveState"}})
	if u.haveState || !u.stateInvalid {
		t.Errorf("invalidated ActiveState: %+v", u)
	}
	u = parsePropertiesChanged("x.service", []any{serviceIface, map[string]godbus.Variant{}, []string{"MainPID"}})
	if u.havePID || !u.pidInvalid {
		t.Errorf("invalidated MainPID: %+v", u)
	}
	// Other interfaces, other properties and short bodies carry nothing usable.
	for _, body := range [][]any{
		{unitIface, map[string]godbus.Variant{"Description": godbus.MakeVariant("x")}, []string{"Conditions"}},
		{"org.freedesktop.systemd1.Scope", map[string]godbus.Variant{"Result": godbus.MakeVariant("success")}, []string{}},
		{serviceIface, map[string]godbus.Variant{"MainPID": godbus.MakeVariant("not a pid")}, []string{}},
		{serviceIface},
		nil,
	} {
		if u := parsePropertiesChanged("x.service", body); u.haveState || u.havePID || u.stateInvalid || u.pidInvalid {
			t.Errorf("body %v: %+v, want nothing", body, u)
		}
	}
}

func TestUsecTime(t *testing.T) {
	if !usecTime(0).IsZero() || !usecTime(^uint64(0)).IsZero() {
		t.Error("0 and UINT64_MAX must be the zero time")
	}
	if got := usecTime(1_700_000_000_000_001); got.UnixMicro() != 1_700_000_000_000_001 {
		t.Errorf("usecTime = %v", got)
	}
}
