package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image. The DaemonSet's command and the installer's default
// package lookup rely on them: change them together.
const (
	BinaryPath = "/nodekeeper"
	DebPath    = "/packages/nodekeeper.deb"
	RPMPath    = "/packages/nodekeeper.rpm"
)

// Entrypoint is the image's entrypoint: the installer. The pod spec adds the
// host root and the override directory as arguments.
var Entrypoint = []string{BinaryPath, "install"}

// platformInput is one platform and the directory with its files.
type platformInput struct {
	Platform v1.Platform
	Dir      string
}

// Spec says what to build.
type Spec struct {
	Out       string
	Version   string
	Created   time.Time
	Platforms []platformInput
}

func parsePlatform(v string) (platformInput, error) {
	spec, dir, ok := strings.Cut(v, "=")
	if !ok || dir == "" {
		return platformInput{}, fmt.Errorf("platform %q: want os/arch[/variant]=DIR", v)
	}
	parts := strings.Split(spec, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return platformInput{}, fmt.Errorf("platform %q: want os/arch[/variant]=DIR", v)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return platformInput{Platform: p, Dir: dir}, nil
}

// Build writes the layout to s.Out (removing what was there) and returns the
// digest of the multi-platform index.
func Build(ctx context.Context, s Spec) (v1.Hash, error) {
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, in := range s.Platforms {
		if err := ctx.Err(); err != nil {
			return v1.Hash{}, err
		}
		key := in.Platform.String()
		if seen[key] {
			return v1.Hash{}, fmt.Errorf("platform %s given twice", key)
		}
		seen[key] = true
		img, err := platformImage(in, s.Version, s.Created)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", key, err)
		}
		p := in.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	idx = mutate.Annotations(idx, labels(s.Version, s.Created)).(v1.ImageIndex)
	if err := os.RemoveAll(s.Out); err != nil {
		return v1.Hash{}, err
	}
	lp, err := layout.Write(s.Out, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": s.Version,
	})); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

func labels(version string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "nodekeeper-installer",
		"org.opencontainers.image.description": "installs the nodekeeper package onto a Kubernetes node's host through its package manager",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
		"org.opencontainers.image.source":      "https://github.com/nodekeeper/nodekeeper",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
}

// platformImage makes the one-layer image of a platform.
func platformImage(in platformInput, version string, created time.Time) (v1.Image, error) {
	files, err := platformFiles(in.Dir)
	if err != nil {
		return nil, err
	}
	data, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "nodekeeper ociimage", Comment: "binary and packages"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = in.Platform.OS
	cf.Architecture = in.Platform.Architecture
	cf.Variant = in.Platform.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = Entrypoint
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Labels = labels(version, created)
	return mutate.ConfigFile(img, cf)
}

// imageFile is one file of the layer: its path in the image, where it comes
// from and its mode.
type imageFile struct {
	Path string
	Src  string
	Mode int64
}

// platformFiles finds the binary and exactly one .deb and one .rpm in dir.
func platformFiles(dir string) ([]imageFile, error) {
	bin := filepath.Join(dir, "nodekeeper")
	if st, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the binary: %w", err)
	} else if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%s is not an executable file", bin)
	}
	one := func(pattern string) (string, error) {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return "", err
		}
		if len(m) != 1 {
			return "", fmt.Errorf("want exactly one %s in %s, found %d", pattern, dir, len(m))
		}
		return m[0], nil
	}
	deb, err := one("*.deb")
	if err != nil {
		return nil, err
	}
	rpm, err := one("*.rpm")
	if err != nil {
		return nil, err
	}
	return []imageFile{
		{Path: BinaryPath, Src: bin, Mode: 0o755},
		{Path: DebPath, Src: deb, Mode: 0o644},
		{Path: RPMPath, Src: rpm, Mode: 0o644},
	}, nil
}

// layerTar writes the files (and their parent directories) and /tmp as a tar
// with fixed owners and dates.
func layerTar(files []imageFile, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		rel := strings.TrimPrefix(f.Path, "/")
		if d := filepath.Dir(rel); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	// /tmp, sticky and world-writable as on any system: the installer keeps
	// its install record there (`install --record`).
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
