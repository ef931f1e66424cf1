package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes a file under dir and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeString loads text as the only file, named test.yaml.
func decodeString(t *testing.T, text string) (Config, error) {
	t.Helper()
	return LoadFiles(writeFile(t, t.TempDir(), "test.yaml", text))
}

func TestLoadMissingMainFile(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(Default()) {
		t.Errorf("Load of a missing file = %+v, want Default()", c)
	}
}

func TestLoadEmptyFiles(t *testing.T) {
	for _, text := range []string{"", "\n\n", "# only\n# comments\n", "---\n", "~\n", "null\n", "---\n# c\n...\n", "\ufeff# with a byte order mark\n"} {
		c, err := decodeString(t, text)
		if err != nil {
			t.Errorf("%q: %v", text, err)
			continue
		}
		if !c.Equal(Default()) {
			t.Errorf("%q loads as %+v, want Default()", text, c)
		}
	}
}

func TestLoadOverrides(t *testing.T) {
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", `
dryRun: true
irq:
  cooldown: 5m
  maxRepairsPerHour: 3
  interfaces:
    include: ["eth*"]
    exclude: ["ib*", "docker*"]
kubelet:
  pinning: static
  cpus: "0-3"
`)
	// Lexical order: 10- before 20- before 9-; 9- sets the last word.
	writeFile(t, dir, "config.d/20-b.yaml", "irq:\n  cooldown: 7m\n  interfaces:\n    exclude: []\n")
	writeFile(t, dir, "config.d/10-a.yaml", "irq:\n  cooldown: 6m\n  remediation: sighup\nkubelet:\n  cpus: \"4-7\"\n")
	writeFile(t, dir, "config.d/9-c.yaml", "irq:\n  checkInterval: 30s\n")
	writeFile(t, dir, "config.d/empty.yaml", "# nothing here\n")
	// Not read: other suffixes, hidden files, directories.
	writeFile(t, dir, "config.d/50-x.yml", "dryRun: nonsense\n")
	writeFile(t, dir, "config.d/.99-hidden.yaml", "dryRun: nonsense\n")
	writeFile(t, dir, "config.d/README", "dryRun: nonsense\n")
	if err := os.Mkdir(filepath.Join(dir, "config.d", "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DryRun = true
	want.IRQ.Cooldown = 7 * time.Minute
	want.IRQ.MaxRepairsPerHour = 3
	want.IRQ.Remediation = RemediationSighup
	want.IRQ.CheckInterval = 30 * time.Second
	want.IRQ.Interfaces.Include = []string{"eth*"}
	want.IRQ.Interfaces.Exclude = nil
	want.Kubelet.Pinning = PinningStatic
	want.Kubelet.CPUs = "4-7"
	if !c.Equal(want) {
		t.Errorf("Load = %+v\nwant %+v", c, want)
	}
	for path, wantFile := range map[string]string{
		"dryRun":                 main,
		"irq.cooldown":           filepath.Join(dir, "config.d/20-b.yaml"),
		"irq.maxRepairsPerHour":  main,
		"irq.remediation":        filepath.Join(dir, "config.d/10-a.yaml"),
		"irq.checkInterval":      filepath.Join(dir, "config.d/9-c.yaml"),
		"irq.interfaces.include": main,
		"kubelet.cpus":           filepath.Join(dir, "config.d/10-a.yaml"),
		"compaction.order":       "",
	} {
		if file, _ := c.Origin(path); file != wantFile {
			t.Errorf("Origin(%s) = %q, want %q", path, file, wantFile)
		}
	}

	// LoadFiles takes the order it is given.
	c, err = LoadFiles(filepath.Join(dir, "config.d/20-b.yaml"), filepath.Join(dir, "config.d/10-a.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.IRQ.Cooldown != 6*time.Minute {
		t.Errorf("LoadFiles: irq.cooldown = %v, want the last file's 6m", c.IRQ.Cooldown)
	}
}

// TestLoadDropInsWithoutMainFile: config.d applies even when the main file
// is missing.
func TestLoadDropInsWithoutMainFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "config.d/10-a.yaml", "dryRun: true\n")
	c, err := Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DryRun {
		t.Error("config.d was not read")
	}
}

// TestLoadOverrideErrorPointsAtLastFile: a value that is invalid is reported
// at the file and line that set it last.
func TestLoadOverrideErrorPointsAtLastFile(t *testing.T) {
	dir := t.TempDir()
	main := writeFile(t, dir, "config.yaml", "irq:\n  minSpreadRatio: 0.5\n")
	drop := writeFile(t, dir, "config.d/10-a.yaml", "# raise it\n\nirq:\n  minSpreadRatio: 2\n")
	_, err := Load(main)
	want := drop + ":4: irq.minSpreadRatio: must be above 0 and at most 1, not 2"
	if err == nil || err.Error() != want {
		t.Errorf("Load error = %v\nwant %s", err, want)
	}
}

func TestLoadFilesMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadFiles(p)
	if err == nil || err.Error() != p+": cannot read: no such file or directory" {
		t.Errorf("err = %v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != p {
		t.Errorf("errors.As(*FieldError) = %+v", fe)
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where a file is expected.
	if _, err := LoadFiles(dir); err == nil || err.Error() != dir+": is a directory, not a file" {
		t.Errorf("LoadFiles(dir) = %v", err)
	}
	// config.d that is a file.
	writeFile(t, dir, "config.d", "x")
	_, err := Load(filepath.Join(dir, "config.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "config.d")+": cannot read the directory: ") {
		t.Errorf("Load with config.d a file = %v", err)
	}
	// Too large.
	big := writeFile(t, dir, "big.yaml", "# "+strings.Repeat("x", maxFileSize)+"\n")
	if _, err := LoadFiles(big); err == nil || err.Error() != big+": is larger than 1 MiB, which no configuration file is" {
		t.Errorf("LoadFiles(big) = %v", err)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := decodeString(t, `
dryRun: True
metrics: {listen: ""}
imds:
  enabled: false
  endpoint: "https://imds.example:8443/"
  pollInterval: 1.5s
  resourceName: 12345
  approveFreeze: true
pauseDetector: {tick: 100ms, gapThreshold: 1m30s}
irq:
  minSpreadRatio: 1
  maxRepairsPerHour: 0x10
  settleDelay: 0s
  interfaces:
    include: &nics
      - eth*
      - 'en*'
    exclude: *nics
kubelet:
  pinning: static
  cpus: 3
  minCPUs: 1_0
  repinInterval: !!str 1h
compaction:
  unusableIndexThreshold: 0
  order: 0
symptoms:
  squeezePerSecond: 18446744073709551615
  cgroupWarn: 1e3
  kubeletSystemCPUWarn: 2
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DryRun = true
	want.Metrics.Listen = ""
	want.IMDS = IMDS{Enabled: "false", Endpoint: "https://imds.example:8443/", PollInterval: 1500 * time.Millisecond, IdlePoll: 5 * time.Second, ResourceName: "12345", ApproveFreeze: true}
	want.PauseDetector = PauseDetector{Tick: 100 * time.Millisecond, GapThreshold: 90 * time.Second}
	want.IRQ.MinSpreadRatio = 1
	want.IRQ.MaxRepairsPerHour = 16
	want.IRQ.SettleDelay = 0
	want.IRQ.Interfaces = Interfaces{Include: []string{"eth*", "en*"}, Exclude: []string{"eth*", "en*"}}
	want.Kubelet.Pinning = "static"
	want.Kubelet.CPUs = "3"
	want.Kubelet.MinCPUs = 10
	want.Kubelet.RepinInterval = time.Hour
	want.Compaction.UnusableIndexThreshold = 0
	want.Compaction.Order = 0
	want.Symptoms.SqueezePerSecond = 18446744073709551615
	want.Symptoms.CgroupWarn = 1000
	want.Symptoms.KubeletSystemCPUWarn = 2
	if !c.Equal(want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestIMDSEnabledSpellings(t *testing.T) {
	for text, want := range map[string]string{
		"true": "true", "True": "true", "FALSE": "false", `"true"`: "true", "auto": "auto", `"auto"`: "auto",
	} {
		c, err := decodeString(t, "imds:\n  enabled: "+text+"\n")
		if err != nil {
			t.Errorf("enabled: %s: %v", text, err)
			continue
		}
		if c.IMDS.Enabled != want {
			t.Errorf("enabled: %s = %q, want %q", text, c.IMDS.Enabled, want)
		}
	}
}

// TestLoadErrors checks every kind of error, word for word. FILE stands for
// the file's path.
func TestLoadErrors(t *testing.T) {
	irqKeys := "checkInterval, settleDelay, remediation, fallbackSpread, minSpreadRatio, cooldown, maxRepairsPerHour, verifyTimeout, vfMissingAfter, interfaces"
	topKeys := "dryRun, metrics, imds, pauseDetector, irq, kubelet, compaction, symptoms, snat, dns, conntrack, latency"
	tests := []struct {
		name, text string
		want       []string
	}{
		// Keys.
		{"unknown key", "irq:\n  foo: 1\n",
			[]string{"FILE:2: irq.foo: unknown key (known: " + irqKeys + ")"}},
		{"unknown top-level key", "\n\nfoo: {a: 1}\n",
			[]string{"FILE:3: foo: unknown key (known: " + topKeys + ")"}},
		{"key in the wrong case", "irq:\n  min_spread_ratio: 0.5\n",
			[]string{"FILE:2: irq.min_spread_ratio: unknown key (known: " + irqKeys + "); did you mean minSpreadRatio?"}},
		{"key in the wrong section", "tick: 1s\ncheckInterval: 1m\n",
			[]string{
				"FILE:1: tick: unknown key (known: " + topKeys + "); did you mean pauseDetector.tick?",
				"FILE:2: checkInterval: unknown key (known: " + topKeys + "); did you mean irq.checkInterval or compaction.checkInterval?",
			}},
		{"dotted key", "irq.interfaces.exclude: []\n",
			[]string{"FILE:1: \"irq.interfaces.exclude\": unknown key (known: " + topKeys + "); keys are nested: write irq:, then interfaces: indented under it, then exclude: indented under it"}},
		{"odd key quoted on one line", "\"a\\nb\": 1\n",
			[]string{"FILE:1: \"a\\nb\": unknown key (known: " + topKeys + ")"}},
		{"duplicate key", "irq:\n  cooldown: 1m\n  cooldown: 2m\n",
			[]string{"FILE:3: irq.cooldown: set twice (first at line 2)"}},
		{"duplicate section", "irq: {}\nkubelet: {}\nirq: {}\n",
			[]string{"FILE:3: irq: set twice (first at line 1)"}},
		{"complex key", "irq:\n  ? [a]\n  : 1\n",
			[]string{"FILE:2: irq: keys must be plain names, not a list"}},
		{"merge key", "base: &b {cooldown: 1m}\n",
			[]string{"FILE:1: base: unknown key (known: " + topKeys + ")"}},
		{"merge key in a section", "irq:\n  <<: {cooldown: 1m}\n",
			[]string{"FILE:2: irq: merge keys (<<) are not supported; write the keys out"}},
		{"bad value beside a key set twice", "irq:\n  cooldown: x\nirq: {}\n",
			[]string{
				`FILE:2: irq.cooldown: "x" is not a duration (e.g. 90s, 2m)`,
				"FILE:3: irq: set twice (first at line 1)",
			}},

		// Structure.
		{"top level a list", "- a\n- b\n",
			[]string{"FILE:1: the file must be a mapping of keys (known: " + topKeys + "), not a list"}},
		{"top level a scalar", "hello\n",
			[]string{`FILE:1: the file must be a mapping of keys (known: ` + topKeys + `), not "hello"`}},
		{"section a scalar", "irq: 5\n",
			[]string{`FILE:1: irq: must be a mapping of keys (known: ` + irqKeys + `), not "5"`}},
		{"section a list", "kubelet:\n  - pinning: off\n",
			[]string{"FILE:2: kubelet: must be a mapping of keys (known: pinning, unit, cpus, minCPUs, repinInterval), not a list"}},
		{"second document", "dryRun: true\n---\ndryRun: false\n",
			[]string{"FILE:3: a second YAML document starts here; a configuration file holds one (remove the ---)"}},

		// Durations.
		{"bad duration", "irq:\n  cooldown: 2x\n",
			[]string{`FILE:2: irq.cooldown: "2x" is not a duration (e.g. 90s, 2m)`}},
		{"bare integer duration", "irq:\n  cooldown: 120\n",
			[]string{`FILE:2: irq.cooldown: "120" has no unit (e.g. 120s or 120ms)`}},
		{"quoted bare integer duration", "irq:\n  cooldown: \"120\"\n",
			[]string{`FILE:2: irq.cooldown: "120" has no unit (e.g. 120s or 120ms)`}},
		{"zero without unit", "irq:\n  settleDelay: 0\n",
			[]string{`FILE:2: irq.settleDelay: "0" has no unit (e.g. 0s or 0ms)`}},
		{"float duration", "irq:\n  settleDelay: 1.5\n",
			[]string{`FILE:2: irq.settleDelay: "1.5" has no unit (e.g. 1.5s or 1.5ms)`}},
		{"duration a list", "irq:\n  cooldown: [1m]\n",
			[]string{`FILE:2: irq.cooldown: must be a duration (e.g. 90s, 2m), not a list`}},
		{"duration overflow", "irq:\n  cooldown: 9999999999h\n",
			[]string{`FILE:2: irq.cooldown: "9999999999h" is not a duration (e.g. 90s, 2m)`}},

		// Other types.
		{"bool yes", "dryRun: yes\n",
			[]string{`FILE:1: dryRun: "yes" is not true or false`}},
		{"bool quoted", "dryRun: \"true\"\n",
			[]string{`FILE:1: dryRun: "true" is a string here, not true or false; remove the quotes`}},
		{"bool explicit tag", "dryRun: !!bool yes\n",
			[]string{`FILE:1: dryRun: "yes" is not true or false`}},
		{"int word", "irq:\n  maxRepairsPerHour: six\n",
			[]string{`FILE:2: irq.maxRepairsPerHour: "six" is not a whole number`}},
		{"int fraction", "irq:\n  maxRepairsPerHour: 2.5\n",
			[]string{`FILE:2: irq.maxRepairsPerHour: "2.5" is not a whole number`}},
		{"int quoted", "irq:\n  maxRepairsPerHour: '6'\n",
			[]string{`FILE:2: irq.maxRepairsPerHour: "6" is a string here, not a number; remove the quotes`}},
		{"int too large", "symptoms:\n  cgroupWarn: 99999999999999999999\n",
			[]string{`FILE:2: symptoms.cgroupWarn: "99999999999999999999" is too large`}},
		{"float word", "irq:\n  minSpreadRatio: most\n",
			[]string{`FILE:2: irq.minSpreadRatio: "most" is not a number`}},
		{"float quoted", "irq:\n  minSpreadRatio: \"0.5\"\n",
			[]string{`FILE:2: irq.minSpreadRatio: "0.5" is a string here, not a number; remove the quotes`}},
		{"float nan", "irq:\n  minSpreadRatio: .nan\n",
			[]string{`FILE:2: irq.minSpreadRatio: ".nan" is not a finite number`}},
		{"float inf", "symptoms:\n  squeezePerSecond: -.inf\n",
			[]string{`FILE:2: symptoms.squeezePerSecond: "-.inf" is not a finite number`}},
		{"string a mapping", "kubelet:\n  unit: {name: kubelet}\n",
			[]string{`FILE:2: kubelet.unit: must be a string, not a mapping`}},
		{"enum a list", "irq:\n  remediation: [restart]\n",
			[]string{`FILE:2: irq.remediation: must be one of restart, sighup, spread, none, not a list`}},
		{"tristate bad bool tag", "imds:\n  enabled: !!bool maybe\n",
			[]string{`FILE:2: imds.enabled: "maybe" is not true or false`}},
		{"unsupported tag", "dryRun: !please true\n",
			[]string{`FILE:1: dryRun: unsupported YAML tag "!please"`}},
		{"binary", "kubelet:\n  unit: !!binary a3ViZWxldC5zZXJ2aWNl\n",
			[]string{`FILE:2: kubelet.unit: unsupported YAML tag "!!binary"`}},
		{"no value", "irq:\n  cooldown:\n",
			[]string{`FILE:2: irq.cooldown: has no value; remove the key to keep the default (2m)`}},
		{"no value string", "kubelet:\n  cpus: ~\n",
			[]string{`FILE:2: kubelet.cpus: has no value; write "" for an empty string, or remove the key to keep the default ("")`}},
		{"no value list", "irq:\n  interfaces:\n    exclude:\n",
			[]string{`FILE:3: irq.interfaces.exclude: has no value; write [] for an empty list, or remove the key to keep the default (["ib*"])`}},
		{"list a scalar", "irq:\n  interfaces:\n    exclude: ib*\n",
			[]string{`FILE:3: irq.interfaces.exclude: must be a list (e.g. ["eth*"]), not "ib*"`}},
		{"list element a list", "irq:\n  interfaces:\n    exclude:\n      - eth*\n      - [ib*]\n      -\n",
			[]string{
				`FILE:5: irq.interfaces.exclude[1]: must be a string, not a list`,
				`FILE:6: irq.interfaces.exclude[2]: has no value; write "" for an empty string`,
			}},

		// YAML syntax.
		{"unclosed flow", "dryRun: true\nirq:\n  cooldown: [1m\n",
			[]string{"FILE:3: invalid YAML: did not find expected ',' or ']'"}},
		{"bad indentation", "irq:\n  cooldown: 1m\n verifyTimeout: 1m\n",
			[]string{"FILE:3: invalid YAML: did not find expected key"}},
		{"mapping in a plain value", "dryRun: true\nirq: cooldown: 1m\n",
			[]string{"FILE:2: invalid YAML: mapping values are not allowed in this context"}},
		{"error on the first line", "dryRun: a: b\n",
			[]string{"FILE:1: invalid YAML: mapping values are not allowed in this context"}},
		{"tab", "irq:\n\tcooldown: 1m\n",
			[]string{"FILE:2: invalid YAML: found character that cannot start any token"}},
		{"unknown anchor", "dryRun: true\n\nirq: *nope\n",
			[]string{"FILE:3: invalid YAML: unknown anchor 'nope' referenced"}},
		{"control character", "dryRun: true\nkubelet:\n  unit: \"a\x01\"\n",
			[]string{"FILE:3: invalid YAML: control characters are not allowed"}},
		{"invalid UTF-8", "dryRun: true\n# \xff\n",
			[]string{"FILE:2: invalid YAML: invalid leading UTF-8 octet"}},
		{"unterminated quote", "dryRun: true\nkubelet:\n  unit: \"kubelet\n",
			[]string{"FILE:3: invalid YAML: found unexpected end of stream"}},
		{"error in a second document", "dryRun: true\n---\n]\n",
			[]string{"FILE:3: invalid YAML: did not find expected node content"}},
		{"tab on a line of its own", "irq:\n  cooldown: 1m\n\t\n",
			[]string{"FILE:3: invalid YAML: found a tab character that violates indentation"}},
		{"error after a flow mapping over two lines", "irq: {cooldown: 1m,\n  settleDelay: 5s}\nfoo: a: b\n",
			[]string{"FILE:3: invalid YAML: mapping values are not allowed in this context"}},
		{"error with CR line breaks", "dryRun: true\rirq: a: b\r",
			[]string{"FILE:2: invalid YAML: mapping values are not allowed in this context"}},

		// Validation of values read from the file.
		{"ratio", "irq:\n  minSpreadRatio: 1.5\n",
			[]string{"FILE:2: irq.minSpreadRatio: must be above 0 and at most 1, not 1.5"}},
		{"enum", "irq:\n  remediation: reboot\n",
			[]string{`FILE:2: irq.remediation: "reboot" is not one of restart, sighup, spread, none`}},
		{"enum from a bool", "irq:\n  remediation: false\n",
			[]string{`FILE:2: irq.remediation: "false" is not one of restart, sighup, spread, none`}},
		{"tristate word", "imds:\n  enabled: yes\n",
			[]string{`FILE:2: imds.enabled: "yes" is not one of auto, true, false`}},
		{"tick against default gap", "pauseDetector:\n  tick: 5s\n",
			[]string{"FILE:2: pauseDetector.tick: must be shorter than pauseDetector.gapThreshold (2s), not 5s (every tick would look like a pause)"}},
		{"gap against tick", "pauseDetector:\n  tick: 1s\n  gapThreshold: 1s\n",
			[]string{"FILE:3: pauseDetector.gapThreshold: must be longer than pauseDetector.tick (1s), not 1s (every tick would look like a pause)"}},
		{"static without cpus", "kubelet:\n  pinning: static\n",
			[]string{`FILE:2: kubelet.cpus: is required when kubelet.pinning is static (e.g. cpus: "2-7")`}},
		{"static with empty cpus", "kubelet:\n  pinning: static\n  cpus: \"\"\n",
			[]string{`FILE:3: kubelet.cpus: is required when kubelet.pinning is static (e.g. cpus: "2-7")`}},
		{"bad cpus", "kubelet:\n  cpus: 3-1\n",
			[]string{`FILE:2: kubelet.cpus: "3-1" is not a CPU list (e.g. 2-7 or 2,4-6)`}},
		{"glob", "irq:\n  interfaces:\n    include:\n      - eth*\n      - \"[eth\"\n",
			[]string{`FILE:5: irq.interfaces.include[1]: "[eth" is not a valid glob (e.g. eth*, enP*)`}},
		{"several values", "irq:\n  cooldown: 1s\n  checkInterval: 0s\nsymptoms:\n  cgroupWarn: 0\n",
			[]string{
				"FILE:3: irq.checkInterval: must be at least 1s, not 0s (a check reads every NIC IRQ's affinity)",
				"FILE:2: irq.cooldown: must be at least 10s, not 1s (irqbalance needs up to 10s to show a repair's effect)",
				"FILE:5: symptoms.cgroupWarn: must be 1 or more, not 0",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "test.yaml", tt.text)
			_, err := LoadFiles(p)
			if err == nil {
				t.Fatalf("no error, want\n%s", strings.Join(tt.want, "\n"))
			}
			want := strings.ReplaceAll(strings.Join(tt.want, "\n"), "FILE", p)
			if err.Error() != want {
				t.Errorf("error\n%s\nwant\n%s", err, want)
			}
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				if _, ok := e.(*FieldError); !ok {
					t.Errorf("%v is a %T, want *FieldError", e, e)
				}
			}
		})
	}
}

func TestLoadErrorCap(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(": 1\n")
	}
	p := writeFile(t, t.TempDir(), "test.yaml", b.String())
	_, err := LoadFiles(p)
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != p+": more than 20 errors; fix these first" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

// TestLoadErrorsAcrossFiles: errors of every file are reported, in order.
func TestLoadErrorsAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", "dryRun: 1\n")
	b := writeFile(t, dir, "b.yaml", "\nirq: {cooldown: x}\n")
	_, err := LoadFiles(a, b)
	want := a + `:1: dryRun: "1" is not true or false` + "\n" + b + `:2: irq.cooldown: "x" is not a duration (e.g. 90s, 2m)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}
