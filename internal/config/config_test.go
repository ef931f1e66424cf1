package config

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the packaged default file from Keys")

// defaultFile is the packaged, documented default configuration.
const defaultFile = "../../configs/config.yaml"

func TestDefault(t *testing.T) {
	d := Default()
	// A few values straight from the design, spelled out so that a change to
	// Default shows up here as well as in the packaged file.
	checks := []struct {
		name      string
		got, want any
	}{
		{"dryRun", d.DryRun, false},
		{"metrics.listen", d.Metrics.Listen, "127.0.0.1:9829"},
		{"imds.enabled", d.IMDS.Enabled, "auto"},
		{"imds.endpoint", d.IMDS.Endpoint, "http://169.254.169.254"},
		{"imds.pollInterval", d.IMDS.PollInterval, time.Second},
		{"pauseDetector.tick", d.PauseDetector.Tick, time.Second},
		{"pauseDetector.gapThreshold", d.PauseDetector.GapThreshold, 2 * time.Second},
		{"irq.checkInterval", d.IRQ.CheckInterval, 60 * time.Second},
		{"irq.remediation", d.IRQ.Remediation, "restart"},
		{"irq.fallbackSpread", d.IRQ.FallbackSpread, true},
		{"irq.minSpreadRatio", d.IRQ.MinSpreadRatio, 0.75},
		{"irq.cooldown", d.IRQ.Cooldown, 2 * time.Minute},
		{"irq.maxRepairsPerHour", d.IRQ.MaxRepairsPerHour, 6},
		{"irq.verifyTimeout", d.IRQ.VerifyTimeout, 30 * time.Second},
		{"irq.vfMissingAfter", d.IRQ.VFMissingAfter, 2 * time.Minute},
		{"irq.interfaces.include", len(d.IRQ.Interfaces.Include), 0},
		{"irq.interfaces.exclude", d.IRQ.Interfaces.Exclude, []string{"ib*"}},
		{"kubelet.pinning", d.Kubelet.Pinning, "auto"},
		{"kubelet.unit", d.Kubelet.Unit, "kubelet.service"},
		{"kubelet.minCPUs", d.Kubelet.MinCPUs, 2},
		{"kubelet.repinInterval", d.Kubelet.RepinInterval, 10 * time.Minute},
		{"compaction.mode", d.Compaction.Mode, "fragmentation"},
		{"compaction.order", d.Compaction.Order, 3},
		{"compaction.unusableIndexThreshold", d.Compaction.UnusableIndexThreshold, 0.8},
		{"compaction.safetyInterval", d.Compaction.SafetyInterval, 3 * time.Hour},
		{"compaction.minInterval", d.Compaction.MinInterval, 30 * time.Minute},
		{"symptoms.softirqBusyThreshold", d.Symptoms.SoftirqBusyThreshold, 0.9},
		{"symptoms.window", d.Symptoms.Window, 10 * time.Second},
		{"symptoms.squeezePerSecond", d.Symptoms.SqueezePerSecond, 100.0},
		{"symptoms.cgroupWarn", d.Symptoms.CgroupWarn, 50000},
		{"symptoms.kubeletSystemCPUWarn", d.Symptoms.KubeletSystemCPUWarn, 0.5},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	// Default returns fresh lists: changing one Config must not change the next.
	d.IRQ.Interfaces.Exclude[0] = "changed"
	if Default().IRQ.Interfaces.Exclude[0] != "ib*" {
		t.Error("Default shares its lists between calls")
	}
}

// TestKeysCoverEveryField makes sure the table has exactly one key per
// settable field of Config, so no field is undocumented or unreadable.
func TestKeysCoverEveryField(t *testing.T) {
	var c Config
	leaves := map[uintptr]string{}
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		if v.Kind() == reflect.Struct {
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), name+"."+v.Type().Field(i).Name)
				}
			}
			return
		}
		leaves[v.Addr().Pointer()] = name
	}
	walk(reflect.ValueOf(&c).Elem(), "Config")

	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.path] {
			t.Errorf("key %s is in the table twice", f.path)
		}
		seen[f.path] = true
		p := reflect.ValueOf(f.ptr(&c)).Pointer()
		if _, ok := leaves[p]; !ok {
			t.Errorf("key %s points at no field of Config, or at one another key points at", f.path)
		}
		delete(leaves, p)
		if f.doc == "" || strings.Contains(f.doc, "\n") {
			t.Errorf("key %s: the doc must be one line", f.path)
		}
		if f.kind == kindTristate || f.values != nil {
			if !slicesContains(f.values, formatValue(f.get(ptrDefault()))) {
				t.Errorf("key %s: the default is not one of %v", f.path, f.values)
			}
		}
	}
	for _, name := range leaves {
		t.Errorf("field %s has no key in the table", name)
	}
}

func slicesContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if len(keys) != len(fields) {
		t.Fatalf("Keys() has %d keys, want %d", len(keys), len(fields))
	}
	want := map[string]KeyDoc{
		"dryRun":                    {Path: "dryRun", Type: "bool", Default: "false"},
		"metrics.listen":            {Path: "metrics.listen", Type: "host:port", Default: `"127.0.0.1:9829"`},
		"imds.enabled":              {Path: "imds.enabled", Type: "auto | true | false", Default: "auto"},
		"imds.resourceName":         {Path: "imds.resourceName", Type: "string", Default: `""`},
		"pauseDetector.tick":        {Path: "pauseDetector.tick", Type: "duration", Default: "1s"},
		"irq.checkInterval":         {Path: "irq.checkInterval", Type: "duration", Default: "1m"},
		"irq.minSpreadRatio":        {Path: "irq.minSpreadRatio", Type: "number", Default: "0.75"},
		"irq.interfaces.include":    {Path: "irq.interfaces.include", Type: "list of globs", Default: "[]"},
		"irq.interfaces.exclude":    {Path: "irq.interfaces.exclude", Type: "list of globs", Default: `["ib*"]`},
		"irq.remediation":           {Path: "irq.remediation", Type: "restart | sighup | spread | none", Default: "restart"},
		"kubelet.unit":              {Path: "kubelet.unit", Type: "unit name", Default: "kubelet.service"},
		"compaction.safetyInterval": {Path: "compaction.safetyInterval", Type: "duration", Default: "3h"},
		"symptoms.cgroupWarn":       {Path: "symptoms.cgroupWarn", Type: "integer", Default: "50000"},
		"symptoms.squeezePerSecond": {Path: "symptoms.squeezePerSecond", Type: "number", Default: "100"},
	}
	for _, k := range keys {
		if k.Doc == "" {
			t.Errorf("%s has no doc", k.Path)
		}
		if w, ok := want[k.Path]; ok {
			k.Doc = ""
			if k != w {
				t.Errorf("Keys(): %+v, want %+v", k, w)
			}
			delete(want, k.Path)
		}
	}
	for p := range want {
		t.Errorf("Keys() lacks %s", p)
	}
}

// TestKeyDefaultsReadBack checks that every default, written as Keys shows
// it, reads back as the default.
func TestKeyDefaultsReadBack(t *testing.T) {
	c, err := decodeString(t, renderDefaultFile())
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(Default()) {
		t.Errorf("the rendered defaults read back as\n%+v\nwant\n%+v", c, Default())
	}
}

// renderDefaultFile writes the packaged default file from the key table.
func renderDefaultFile() string {
	var b strings.Builder
	b.WriteString(defaultFileHeader)
	open := []string{} // sections of the previous key
	for _, k := range Keys() {
		parts := strings.Split(k.Path, ".")
		sections := parts[:len(parts)-1]
		common := 0
		for common < len(open) && common < len(sections) && open[common] == sections[common] {
			common++
		}
		if common == 0 {
			b.WriteString("\n")
		}
		for i := common; i < len(sections); i++ {
			b.WriteString(strings.Repeat("  ", i) + sections[i] + ":\n")
		}
		open = sections
		indent := strings.Repeat("  ", len(sections))
		b.WriteString(indent + "# " + k.Doc + "\n")
		line := indent + parts[len(parts)-1] + ": " + k.Default
		if f := fieldByPath[k.Path]; f.values != nil {
			line += "  # " + k.Type
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

const defaultFileHeader = `# nodekeeper configuration.
#
# Every key is optional: the values below are the defaults. Files in config.d/*.yaml next to
# this file are read after it, in lexical order, and override the keys they set (a list is
# replaced as a whole) - set options there rather than here, so package upgrades can update
# this file. Durations take a unit: 250ms, 90s, 2m, 3h.
#
# Check the files with "nodekeeper config validate"; the daemon re-reads them on SIGHUP and
# keeps its current configuration if they have an error.
`

func TestDefaultFile(t *testing.T) {
	want := renderDefaultFile()
	if *update {
		if err := os.WriteFile(defaultFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not what the key table says; run go test ./internal/config -run TestDefaultFile -update and review the diff", defaultFile)
	}

	c, err := LoadFiles(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(Default()) {
		t.Errorf("%s loads as\n%+v\nwant Default()\n%+v", defaultFile, c, Default())
	}
	// Every key is set by the file, so every key has an origin in it.
	for _, k := range Keys() {
		if file, line := c.Origin(k.Path); file != defaultFile || line == 0 {
			t.Errorf("Origin(%s) = %s:%d, want a line of %s", k.Path, file, line, defaultFile)
		}
	}
}

// TestDefaultFileMentionsEveryKey checks the packaged file key by key, with
// its comment, independently of how the file is laid out.
func TestDefaultFileMentionsEveryKey(t *testing.T) {
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	found := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(prefix, k.Value)
			if v.Kind == yaml.MappingNode {
				walk(v, p)
				continue
			}
			found[p] = k
		}
	}
	walk(doc.Content[0], "")
	for _, k := range Keys() {
		n, ok := found[k.Path]
		if !ok {
			t.Errorf("%s does not set %s", defaultFile, k.Path)
			continue
		}
		if !strings.Contains(n.HeadComment+n.LineComment, k.Doc) {
			t.Errorf("%s: %s is not documented with %q", defaultFile, k.Path, k.Doc)
		}
		delete(found, k.Path)
	}
	for p := range found {
		t.Errorf("%s sets %s, which is not in Keys()", defaultFile, p)
	}
}

func TestEqualAndOrigin(t *testing.T) {
	c, err := decodeString(t, "irq:\n  cooldown: 5m\n  interfaces:\n    include: []\n")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.IRQ.Cooldown = 5 * time.Minute
	d.IRQ.Interfaces.Include = []string{}
	if !c.Equal(d) || !d.Equal(c) {
		t.Errorf("Equal(%+v, %+v) = false", c, d)
	}
	d.IRQ.Cooldown = time.Minute
	if c.Equal(d) {
		t.Error("Equal ignores a changed value")
	}
	if file, line := c.Origin("irq.cooldown"); !strings.HasSuffix(file, "test.yaml") || line != 2 {
		t.Errorf("Origin(irq.cooldown) = %s:%d, want test.yaml:2", file, line)
	}
	if file, line := c.Origin("irq.checkInterval"); file != "" || line != 0 {
		t.Errorf("Origin of a default = %s:%d, want none", file, line)
	}
	c.IRQ.Cooldown = time.Hour // changed in code: no longer the file's value
	if file, _ := c.Origin("irq.cooldown"); file != "" {
		t.Errorf("Origin of a value changed in code = %s, want none", file)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 250 * time.Millisecond: "250ms", 90 * time.Second: "90s", 60 * time.Second: "1m",
		3 * time.Hour: "3h", 1500 * time.Microsecond: "1500us", 1500 * time.Nanosecond: "1.5µs",
		-2 * time.Second: "-2s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(formatDuration(d)); err != nil || back != d {
			t.Errorf("formatDuration(%v) does not parse back: %v, %v", d, back, err)
		}
	}
}

func TestFormatString(t *testing.T) {
	for s, want := range map[string]string{
		"": `""`, "auto": "auto", "kubelet.service": "kubelet.service", "true": `"true"`, "no": `"no"`,
		"127.0.0.1:9829": `"127.0.0.1:9829"`, "2-7": `"2-7"`, "a b": `"a b"`, "ib*": `"ib*"`,
	} {
		if got := formatString(s); got != want {
			t.Errorf("formatString(%q) = %s, want %s", s, got, want)
		}
		var back string
		if err := yaml.Unmarshal([]byte("x: "+formatString(s)), &struct{ X *string }{&back}); err != nil || back != s {
			t.Errorf("formatString(%q) reads back as %q (%v)", s, back, err)
		}
	}
}
