package packer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// root is the repository's top directory (the test runs in tools/packer).
var root = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

func repo(rel string) string { return filepath.Join(root, rel) }

// hclVars collects the names of var.NAME references in an HCL body.
func hclVars(body *hclsyntax.Body) map[string]bool {
	used := map[string]bool{}
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		if e, ok := n.(hclsyntax.Expression); ok {
			for _, tr := range e.Variables() {
				if tr.RootName() == "var" && len(tr) > 1 {
					if a, ok := tr[1].(hcl.TraverseAttr); ok {
						used[a.Name] = true
					}
				}
			}
		}
		return nil
	})
	return used
}

func TestPackerTemplate(t *testing.T) {
	p := hclparse.NewParser()
	files, _ := filepath.Glob(repo("image/packer/*.pkr.hcl"))
	if len(files) == 0 {
		t.Fatal("no image/packer/*.pkr.hcl")
	}
	declared := map[string]bool{}
	used := map[string]bool{}
	sources := map[string]bool{}
	var provisioners []*hclsyntax.Block
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		body := file.Body.(*hclsyntax.Body)
		for k := range hclVars(body) {
			used[k] = true
		}
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				declared[b.Labels[0]] = true
			case "source":
				sources[strings.Join(b.Labels, ".")] = true
				if b.Labels[0] != "azure-arm" {
					t.Errorf("source %v: want the azure-arm builder", b.Labels)
				}
			case "build":
				for _, pb := range b.Body.Blocks {
					if pb.Type == "provisioner" {
						provisioners = append(provisioners, pb)
					}
				}
			}
		}
	}
	for _, s := range []string{"azure-arm.ubuntu-2204", "azure-arm.azurelinux-3"} {
		if !sources[s] {
			t.Errorf("no source %s", s)
		}
	}
	for v := range used {
		if !declared[v] {
			t.Errorf("var.%s is used but not declared", v)
		}
	}
	for _, v := range []string{"nodekeeper_deb", "nodekeeper_rpm", "nodekeeper_config_override", "ubuntu_2204_image", "azurelinux_3_image"} {
		if !declared[v] {
			t.Errorf("variable %q is not declared", v)
		}
	}
	// The install step is image/scripts/install.sh, uploaded and run.
	src := ""
	for _, f := range files {
		b, _ := os.ReadFile(f)
		src += string(b)
	}
	for _, s := range []string{`"${path.root}/../scripts/install.sh"`, "bash /tmp/nodekeeper-install.sh", "NODEKEEPER_CONFIG_OVERRIDE_B64"} {
		if !strings.Contains(src, s) {
			t.Errorf("the template does not contain %s", s)
		}
	}
	if len(provisioners) < 3 {
		t.Errorf("%d provisioners, want the upload and the install step at least", len(provisioners))
	}
	if _, err := os.Stat(repo("image/packer/../scripts/install.sh")); err != nil {
		t.Error(err)
	}

	// The var files set only declared variables.
	vfs, _ := filepath.Glob(repo("image/packer/*.pkrvars.hcl"))
	if len(vfs) < 2 {
		t.Errorf("want var files for both sources, have %v", vfs)
	}
	for _, f := range vfs {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		attrs, diags := file.Body.JustAttributes()
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		for name := range attrs {
			if !declared[name] {
				t.Errorf("%s sets undeclared variable %s", filepath.Base(f), name)
			}
		}
	}
}
