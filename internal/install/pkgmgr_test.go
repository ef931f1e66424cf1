package install

import (
	"context"
	"errors"
	"os/exec"
	"testing"
)

// direct runs the tools of this machine, not chrooted: for comparing versions
// with the real dpkg and rpm.
type direct struct{}

func (direct) Run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return string(out), err
}

var versionOrder = []struct {
	a, b  string
	newer bool
}{
	{"1.2.3-1", "1.2.3-1", false},
	{"1.2.4-1", "1.2.3-1", true},
	{"1.2.3-1", "1.10.0-1", false},
	{"1.10.0-1", "1.2.3-1", true},
	{"1.2.3+4.gabc1234-1", "1.2.3-1", true},
	{"0.0.0~git185.7742686-1", "0.0.1-1", false},
	{"99.0.0-1", "0.0.0~git185.7742686-1", true},
}

func TestNewerWithTheRealTools(t *testing.T) {
	for _, pm := range []PackageManager{Dpkg{direct{}}, RPM{direct{}}} {
		if _, err := exec.LookPath(pm.Name()); err != nil {
			t.Skipf("no %s on this machine (make test installs it)", pm.Name())
		}
		for _, c := range versionOrder {
			if got, err := pm.Newer(t.Context(), c.a, c.b); err != nil || got != c.newer {
				t.Errorf("%s: Newer(%s, %s) = %v, %v; want %v", pm.Name(), c.a, c.b, got, err, c.newer)
			}
		}
	}
}

type scripted struct {
	out string
	err error
}

func (s scripted) Run(context.Context, []string, string, ...string) (string, error) {
	return s.out, s.err
}

// TestRPMNewerWithoutVercmp: an rpm without rpm.vercmp (it prints the macro
// back, or fails) and versions that cannot go into Lua fall back to "any
// other version is newer".
func TestRPMNewerWithoutVercmp(t *testing.T) {
	for _, c := range []struct {
		r    scripted
		a, b string
		want bool
	}{
		{scripted{out: `%{lua: print(rpm.vercmp("1.0-1", "2.0-1"))}`}, "1.0-1", "2.0-1", true},
		{scripted{err: errors.New("exit status 1")}, "1.0-1", "2.0-1", true},
		{scripted{out: "-1\n"}, "1.0-1", "2.0-1", false},
		{scripted{out: "-1\n"}, `1.0"); os.exit(1) --`, "2.0-1", true}, // not asked: not Lua-safe
		{scripted{out: "-1\n"}, "2.0-1", "2.0-1", false},
	} {
		if got, err := (RPM{c.r}).Newer(t.Context(), c.a, c.b); err != nil || got != c.want {
			t.Errorf("%+v: %v, %v; want %v", c, got, err, c.want)
		}
	}
}
