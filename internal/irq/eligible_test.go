package irq

import (
	"strings"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

func TestParseEnvFile(t *testing.T) {
	env, errs := ParseEnvFile(`# irqbalance options
IRQBALANCE_ONESHOT=
export IRQBALANCE_BANNED_CPULIST="2-3, 8"
IRQBALANCE_ARGS='--interval=1 --policyscript=/x'
IRQBALANCE_BANNED_CPUS=0000000f # old style
  FOO = bar
not a line
X="unterminated
`)
	want := map[string]string{
		"IRQBALANCE_ONESHOT":        "",
		"IRQBALANCE_BANNED_CPULIST": "2-3, 8",
		"IRQBALANCE_ARGS":           "--interval=1 --policyscript=/x",
		"IRQBALANCE_BANNED_CPUS":    "0000000f",
		"FOO":                       "bar",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if len(errs) != 2 {
		t.Errorf("errors = %v, want 2 (line 7 and 8)", errs)
	}
}

func TestBannedFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
		ok   bool
		bad  bool
	}{
		{map[string]string{"IRQBALANCE_BANNED_CPULIST": "0-3", "IRQBALANCE_BANNED_CPUS": "ff"}, "0-3", true, false},
		{map[string]string{"IRQBALANCE_BANNED_CPUS": "00000000,00000003"}, "0-1", true, false},
		{map[string]string{"IRQBALANCE_BANNED_CPULIST": ""}, "", false, false},
		{map[string]string{}, "", false, false},
		{map[string]string{"IRQBALANCE_BANNED_CPUS": "zz"}, "", true, true},
	} {
		s, _, ok, err := BannedFromEnv(tc.env)
		if ok != tc.ok || (err != nil) != tc.bad || (!tc.bad && s.List() != tc.want) {
			t.Errorf("BannedFromEnv(%v) = %q %v %v", tc.env, s.List(), ok, err)
		}
	}
}

func TestEligible(t *testing.T) {
	online := cpuset.Range(0, 7)
	if got := Eligible(online, cpuset.Range(4, 11), cpuset.New(4)).List(); got != "5-7" {
		t.Errorf("node ∩ online − banned = %q", got)
	}
	if got := Eligible(online, cpuset.Range(8, 11), cpuset.Set{}).List(); got != "0-7" {
		t.Errorf("a node without online CPUs falls back to all online: %q", got)
	}
	if got := Eligible(online, cpuset.Range(0, 1), cpuset.Range(0, 1)).List(); got != "2-7" {
		t.Errorf("a node whose CPUs are all banned falls back to online − banned: %q", got)
	}
	if got := Eligible(online, cpuset.Set{}, online).List(); got != "0-7" {
		t.Errorf("never empty while a CPU is online: %q", got)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	f.Add("IRQBALANCE_BANNED_CPULIST=0-3\n")
	f.Add("export A='x'\n#c\nB=\"y\" # z\n")
	f.Fuzz(func(t *testing.T, data string) {
		env, _ := ParseEnvFile(data)
		for k := range env {
			if !validEnvKey(k) || strings.ContainsAny(k, "\n=") {
				t.Fatalf("bad key %q", k)
			}
		}
		if s, _, ok, err := BannedFromEnv(env); ok && err == nil && s.Max() > cpuset.MaxCPU {
			t.Fatalf("banned CPU out of range")
		}
	})
}
