package imds

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Azure's DMI identity.
const (
	azureSysVendor       = "Microsoft Corporation"
	azureChassisAssetTag = "7783-7084-3265-9085"
)

// DetectAzure reports whether the machine is an Azure VM, from DMI under the
// sysfs root: class/dmi/id/sys_vendor is "Microsoft Corporation" and
// class/dmi/id/chassis_asset_tag is Azure's asset tag. Missing DMI files (a
// machine or container without DMI) mean "not Azure", not an error.
func DetectAzure(sysfsRoot string) (bool, error) {
	dir := filepath.Join(sysfsRoot, "class", "dmi", "id")
	vendor, err := readDMI(filepath.Join(dir, "sys_vendor"))
	if err != nil || vendor != azureSysVendor {
		return false, err
	}
	tag, err := readDMI(filepath.Join(dir, "chassis_asset_tag"))
	if err != nil {
		return false, err
	}
	return tag == azureChassisAssetTag, nil
}

func readDMI(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("detect Azure: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 256) // DMI strings are short; do not trust the file's size
	n, err := f.Read(buf)
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("detect Azure: read %s: %w", path, err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}
