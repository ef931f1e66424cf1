package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

// Host is the node's root file system as the pod sees it (--host-root).
type Host struct {
	Root string
}

// Path is the pod's path of the host's absolute path p.
func (h *Host) Path(p string) string { return filepath.Join(h.Root, p) }

// Stage copies the package file into the host's /var/tmp, where the
// chrooted package manager can read it, and returns its path as the host
// sees it and a cleanup.
func (h *Host) Stage(pkg string) (string, func(), error) {
	src, err := os.Open(pkg)
	if err != nil {
		return "", nil, fmt.Errorf("the package: %w", err)
	}
	defer src.Close()
	dir, err := os.MkdirTemp(h.Path("/var/tmp"), "nodekeeper-install-")
	if err != nil {
		return "", nil, fmt.Errorf("stage the package on the host: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	dst, err := os.Create(filepath.Join(dir, filepath.Base(pkg)))
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("stage the package on the host: %w", err)
	}
	rel, err := filepath.Rel(h.Root, dst.Name())
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return "/" + rel, cleanup, nil
}

// The host's configuration, as the package installs it.
const (
	mainConfig = "/etc/nodekeeper/config.yaml"
	dropInDir  = "/etc/nodekeeper/config.d"
)

// Override is the planned content of the override's files, by name in
// config.d.
type Override struct {
	Files map[string][]byte
}

// PlanOverride reads the override's files from dir (the ConfigMap's mount:
// every *.yaml or *.yml file, following the kubelet's symlinks) and checks
// them as `config validate` would on the host: the host's main config (or
// the defaults before the first install), its other drop-ins, and these in
// their place. A refused override changes nothing.
func (h *Host) PlanOverride(dir string) (Override, error) {
	o := Override{Files: map[string][]byte{}}
	if dir == "" {
		return o, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return o, err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue // ..data and the other ConfigMap bookkeeping
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return o, err
		}
		o.Files[name] = b
	}
	if len(o.Files) == 0 {
		return o, nil
	}
	// Validate in a scratch copy: the host's files, these in their place.
	scratch, err := os.MkdirTemp(h.Path("/var/tmp"), "nodekeeper-override-") // the image may have no /tmp
	if err != nil {
		return o, err
	}
	defer os.RemoveAll(scratch)
	var files []string
	if b, err := os.ReadFile(h.Path(mainConfig)); err == nil {
		p := filepath.Join(scratch, "config.yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return o, err
		}
		files = append(files, p)
	}
	names := map[string]bool{}
	if ents, err := os.ReadDir(h.Path(dropInDir)); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".yaml") {
				names[e.Name()] = true
			}
		}
	}
	for n := range o.Files {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		b, ok := o.Files[n]
		if !ok {
			if b, err = os.ReadFile(filepath.Join(h.Path(dropInDir), n)); err != nil {
				continue
			}
		}
		p := filepath.Join(scratch, n)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return o, err
		}
		files = append(files, p)
	}
	if _, err := config.LoadFiles(files...); err != nil {
		return o, errors.New(strings.NewReplacer(scratch+"/", "").Replace(err.Error())) // name the files as the ConfigMap does
	}
	return o, nil
}

// ApplyOverride writes the override's files that differ into the host's
// config.d (each atomically, root's, 0644) and returns the host paths it
// wrote and a restore that puts the old contents back.
func (h *Host) ApplyOverride(o Override) (changed []string, restore func() error, err error) {
	type old struct {
		path string
		data []byte
		had  bool
	}
	var olds []old
	restore = func() error {
		var errs []error
		for _, o := range slices.Backward(olds) {
			if o.had {
				errs = append(errs, writeAtomic(o.path, o.data))
			} else {
				errs = append(errs, os.Remove(o.path))
			}
		}
		return errors.Join(errs...)
	}
	names := make([]string, 0, len(o.Files))
	for n := range o.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(h.Path(dropInDir), n)
		cur, rerr := os.ReadFile(p)
		if rerr == nil && bytes.Equal(cur, o.Files[n]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, restore, errors.Join(fmt.Errorf("write the override: %w", err), restore())
		}
		olds = append(olds, old{path: p, data: cur, had: rerr == nil})
		if err := writeAtomic(p, o.Files[n]); err != nil {
			return nil, restore, errors.Join(fmt.Errorf("write the override: %w", err), restore())
		}
		changed = append(changed, filepath.Join(dropInDir, n))
	}
	return changed, restore, nil
}

// writeAtomic writes data to path through a temporary file in its directory.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".nodekeeper-install-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
