package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to LoadFiles: it must never panic, and every
// line of an error must start with the file name, or with a key when the
// problem is not tied to the file.
func FuzzLoad(f *testing.F) {
	if data, err := os.ReadFile(defaultFile); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"# comment\n",
		"dryRun: true\n",
		"irq:\n  cooldown: 2x\n  foo: 1\n",
		"irq: {interfaces: {include: [eth*, '[a'], exclude: *x}}\n",
		"a: &a [*a]\n",
		"irq: &i\n  cooldown: 1m\nkubelet: *i\n",
		"pauseDetector: {tick: 5s}\nkubelet: {pinning: static}\n",
		"---\n---\n",
		"? [a, b]\n: c\n",
		"irq:\n  <<: {cooldown: 1m}\n",
		"\"a\\nb\": 1\n",
		"irq:\n\tcooldown: 1m\n",
		"metrics: {listen: \"[::1]:99999\"}\n",
		"symptoms: {squeezePerSecond: .inf, cgroupWarn: 1e400}\n",
		"imds: {enabled: !!bool x, endpoint: !!binary aGk=}\n",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	keys := Keys()
	p := filepath.Join(f.TempDir(), "fuzz.yaml") // inputs run one at a time in each process
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadFiles(p)
		if err == nil {
			// What loads is valid, and survives another validation.
			if err := c.Validate(); err != nil {
				t.Fatalf("loaded config does not validate: %v", err)
			}
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, p+":") {
				continue
			}
			ok := false
			for _, k := range keys {
				if strings.HasPrefix(line, k.Path+":") || strings.HasPrefix(line, k.Path+"[") {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("error line %q starts with neither the file name nor a key", line)
			}
		}
		joined, ok := err.(interface{ Unwrap() []error })
		if !ok {
			t.Fatalf("error %T is not a joined error", err)
		}
		for _, e := range joined.Unwrap() {
			var fe *FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%v is a %T, want *FieldError", e, e)
			}
		}
	})
}
