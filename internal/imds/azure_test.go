package imds

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectAzure(t *testing.T) {
	tests := []struct {
		name   string
		vendor string // "-" = file missing
		tag    string
		want   bool
	}{
		{"Azure VM", "Microsoft Corporation\n", "7783-7084-3265-9085\n", true},
		{"Hyper-V on premises", "Microsoft Corporation\n", "None\n", false},
		{"another cloud", "Amazon EC2\n", "7783-7084-3265-9085\n", false},
		{"no DMI", "-", "-", false},
		{"vendor only", "Microsoft Corporation\n", "-", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "class", "dmi", "id")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for file, content := range map[string]string{"sys_vendor": tt.vendor, "chassis_asset_tag": tt.tag} {
				if content == "-" {
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o444); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DetectAzure(root)
			if err != nil || got != tt.want {
				t.Errorf("DetectAzure = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestDetectAzureUnreadable(t *testing.T) {
	root := t.TempDir()
	// A directory where a file should be: reading it fails.
	if err := os.MkdirAll(filepath.Join(root, "class", "dmi", "id", "sys_vendor"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := DetectAzure(root); err == nil || got {
		t.Errorf("DetectAzure = %v, %v; want an error", got, err)
	}
}
