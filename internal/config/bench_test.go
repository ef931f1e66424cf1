package config

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLoad reads the packaged configuration (every key set) plus two
// drop-ins, as start-up, reload and `config validate` do.
func BenchmarkLoad(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "config.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	main := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(main, data, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, DropInDir), 0o755); err != nil {
		b.Fatal(err)
	}
	for name, text := range map[string]string{
		"10-a.yaml": "irq:\n  cooldown: 6m\nkubelet:\n  cpus: \"4-7\"\n  pinning: static\n",
		"20-b.yaml": "compaction:\n  order: 4\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, DropInDir, name), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadWith(main, Options{StrictModes: true}); err != nil {
			b.Fatal(err)
		}
	}
}
