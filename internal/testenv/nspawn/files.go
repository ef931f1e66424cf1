package nspawn

// Files inside the container, reached from the host through the leader's
// root with openat2 (RESOLVE_IN_ROOT).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// openRoot opens the container's root directory for openat2 with
// RESOLVE_IN_ROOT: symlinks in the container resolve inside the container.
func (c *Container) openRoot() (int, error) {
	return unix.Open(c.Root(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func inRoot(root int, name string, flags uint64, mode uint32) (int, error) {
	return unix.Openat2(root, name, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

func relPath(name string) (string, error) {
	if !filepath.IsAbs(name) {
		return "", fmt.Errorf("nspawn: %q is not an absolute path", name)
	}
	rel := strings.TrimPrefix(filepath.Clean(name), "/")
	if rel == "" {
		return ".", nil
	}
	return rel, nil
}

// WriteFile writes data to the absolute path name inside the container,
// creating missing parent directories (mode 0755) and the file with mode perm.
// Writes land in the container's overlay, never in the root filesystem tree.
func (c *Container) WriteFile(name string, data []byte, perm os.FileMode) error {
	rel, err := relPath(name)
	if err != nil {
		return err
	}
	root, err := c.openRoot()
	if err != nil {
		return fmt.Errorf("nspawn: %w", err)
	}
	defer unix.Close(root)
	if err := mkdirAllIn(root, filepath.Dir(rel)); err != nil {
		return fmt.Errorf("nspawn: mkdir for %s: %w", name, err)
	}
	fd, err := inRoot(root, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, uint32(perm.Perm()))
	if err != nil {
		return fmt.Errorf("nspawn: open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), c.hostPath(name))
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm.Perm()) // not reduced by the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("nspawn: write %s: %w", name, err)
	}
	return nil
}

func mkdirAllIn(root int, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := inRoot(root, p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		parent := "."
		if i > 0 {
			parent = strings.Join(parts[:i], "/")
		}
		pfd, err := inRoot(root, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return nil
}

// ReadFile reads the absolute path name inside the container.
func (c *Container) ReadFile(name string) ([]byte, error) {
	rel, err := relPath(name)
	if err != nil {
		return nil, err
	}
	root, err := c.openRoot()
	if err != nil {
		return nil, fmt.Errorf("nspawn: %w", err)
	}
	defer unix.Close(root)
	fd, err := inRoot(root, rel, unix.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("nspawn: open %s: %w", name, &os.PathError{Op: "open", Path: name, Err: err})
	}
	f := os.NewFile(uintptr(fd), c.hostPath(name))
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("nspawn: read %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
