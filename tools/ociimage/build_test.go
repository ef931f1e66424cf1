package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platformDir makes a directory with a fake binary and packages for arch.
func platformDir(t *testing.T, arch string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"nodekeeper":                          "binary " + arch,
		"nodekeeper_1.2.3_" + arch + ".deb":   "deb " + arch,
		"nodekeeper-1.2.3-1." + arch + ".rpm": "rpm " + arch,
	}
	for _, e := range extra {
		files[e] = e
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func spec(t *testing.T, out string) Spec {
	return Spec{
		Out: out, Version: "1.2.3", Created: time.Unix(1700000000, 0).UTC(),
		Platforms: []platformInput{
			{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Dir: platformDir(t, "amd64")},
			{Platform: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, Dir: platformDir(t, "arm64")},
		},
	}
}

func layerFiles(t *testing.T, img v1.Image) (bodies map[string]string, modes map[string]int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, modes := map[string]string{}, map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s owned by %d:%d %q, want root by number", h.Name, h.Uid, h.Gid, h.Uname)
		}
		got[h.Name], modes[h.Name] = string(b), h.Mode
	}
	return got, modes
}

func TestBuildWritesMultiPlatformLayout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "oci")
	s := spec(t, out)
	digest, err := Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest || im.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json lists %+v; want the one image index %s", im.Manifests, digest)
	}
	if ref := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != "1.2.3" {
		t.Errorf("ref.name %q, want the version", ref)
	}
	idx, err := top.ImageIndex(digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 {
		t.Fatalf("the image index lists %d images, want amd64 and arm64", len(m.Manifests))
	}
	for i, d := range m.Manifests {
		want := s.Platforms[i].Platform
		if d.Platform == nil || !d.Platform.Equals(want) || d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("image %d: platform %v media type %s; want %v, an OCI manifest", i, d.Platform, d.MediaType, want)
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != want.Architecture || cf.OS != "linux" || cf.Variant != want.Variant {
			t.Errorf("image %d: config says %s/%s/%s, want %v", i, cf.OS, cf.Architecture, cf.Variant, want)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/nodekeeper", "install"}) || len(cf.Config.Cmd) != 0 {
			t.Errorf("image %d: entrypoint %v cmd %v, want /nodekeeper install and no cmd", i, cf.Config.Entrypoint, cf.Config.Cmd)
		}
		if !cf.Created.Time.Equal(s.Created) {
			t.Errorf("image %d: created %v, want %v", i, cf.Created, s.Created)
		}
		arch := want.Architecture
		wantFiles := map[string]string{
			"nodekeeper":              "binary " + arch,
			"packages/":               "",
			"packages/nodekeeper.deb": "deb " + arch,
			"packages/nodekeeper.rpm": "rpm " + arch,
			"tmp/":                    "",
		}
		got, modes := layerFiles(t, img)
		if modes["tmp/"] != 0o1777 {
			t.Errorf("image %d: /tmp has mode %o, want 1777 (the install record goes there)", i, modes["tmp/"])
		}
		if len(got) != len(wantFiles) {
			t.Errorf("image %d: layer holds %v, want %v", i, got, wantFiles)
		}
		for name, body := range wantFiles {
			if got[name] != body {
				t.Errorf("image %d: %s = %q, want %q", i, name, got[name], body)
			}
		}
	}

	// The same inputs give the same digest, wherever the layout goes.
	again, err := Build(context.Background(), Spec{Out: filepath.Join(t.TempDir(), "x"), Version: s.Version, Created: s.Created, Platforms: s.Platforms})
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("rebuilt digest %s, first %s: the build is not reproducible", again, digest)
	}
	// Another date gives another digest (the date is really recorded).
	s.Out, s.Created = filepath.Join(t.TempDir(), "y"), s.Created.Add(time.Second)
	if other, err := Build(context.Background(), s); err != nil || other == digest {
		t.Errorf("a build with another date: %s, %v; want another digest", other, err)
	}
}

func TestBuildRefusesIncompleteInput(t *testing.T) {
	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	two := platformDir(t, "amd64", "nodekeeper_0.9_amd64.deb")
	noBin := platformDir(t, "amd64")
	os.Remove(filepath.Join(noBin, "nodekeeper"))
	for name, c := range map[string]struct {
		in   []platformInput
		want string
	}{
		"two debs":       {[]platformInput{{amd, two}}, "exactly one *.deb"},
		"no binary":      {[]platformInput{{amd, noBin}}, "the binary"},
		"platform twice": {[]platformInput{{amd, platformDir(t, "amd64")}, {amd, platformDir(t, "amd64")}}, "given twice"},
	} {
		_, err := Build(context.Background(), Spec{Out: filepath.Join(t.TempDir(), "o"), Platforms: c.in})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, c.want)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	p, err := parsePlatform("linux/arm64/v8=dist/x")
	if err != nil || p.Dir != "dist/x" || p.Platform.Architecture != "arm64" || p.Platform.Variant != "v8" {
		t.Errorf("linux/arm64/v8=dist/x: %+v, %v", p, err)
	}
	for _, bad := range []string{"linux/amd64", "amd64=d", "linux//x=d", "a/b/c/d=d", "linux/amd64="} {
		if _, err := parsePlatform(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := sourceDate("yesterday"); err == nil {
		t.Error("SOURCE_DATE_EPOCH=yesterday: no error")
	}
}
