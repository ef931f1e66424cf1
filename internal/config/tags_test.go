package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// taggedLeaves lists the key path and address of every leaf field of *c, in
// struct order, by following the yaml tags.
func taggedLeaves(t *testing.T, v reflect.Value, prefix string) (paths []string, addrs []uintptr) {
	t.Helper()
	for i := range v.NumField() {
		name, ok := yamlName(v.Type().Field(i))
		if !ok {
			continue
		}
		path := joinPath(prefix, name)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			p, a := taggedLeaves(t, fv, path)
			paths, addrs = append(paths, p...), append(addrs, a...)
			continue
		}
		paths = append(paths, path)
		addrs = append(addrs, fv.Addr().Pointer())
	}
	return paths, addrs
}

// TestFieldTagsMatchTable: the yaml tags of Config and the table of keys name
// the same keys, in the same order, and each table entry points at the field
// tagged with its path, so decoding (tags) and the documentation (table)
// cannot drift apart.
func TestFieldTagsMatchTable(t *testing.T) {
	var c Config
	paths, addrs := taggedLeaves(t, reflect.ValueOf(&c).Elem(), "")
	var table []string
	for _, f := range fields {
		table = append(table, f.path)
	}
	if strings.Join(paths, "\n") != strings.Join(table, "\n") {
		t.Fatalf("struct tags (in struct order):\n%s\n\ntable of keys (keys.go):\n%s", strings.Join(paths, "\n"), strings.Join(table, "\n"))
	}
	for i, f := range fields {
		if got := reflect.ValueOf(f.ptr(&c)).Pointer(); got != addrs[i] {
			t.Errorf("%s: the table's ptr points at another field than the one tagged %q", f.path, f.path)
		}
		if got, want := reflect.TypeOf(f.ptr(&c)).Elem(), goTypes[f.kind]; got != want {
			t.Errorf("%s: field is a %v, its kind wants a %v", f.path, got, want)
		}
	}
	if _, err := buildFileSchema(reflect.TypeFor[Config]()); err != nil {
		t.Errorf("buildFileSchema(Config): %v", err)
	}
}

// TestBuildFileSchemaRefusesDrift: a tagged field the table does not know, a
// table key no field carries, and a field of the wrong type are refused.
func TestBuildFileSchemaRefusesDrift(t *testing.T) {
	type irq struct {
		Cooldown time.Duration `yaml:"cooldown"`
	}
	for _, tt := range []struct {
		name string
		typ  reflect.Type
		want string
	}{
		{"field not in the table", reflect.TypeFor[struct {
			Config
			Extra int `yaml:"extra"`
		}](), `field Extra (yaml "extra") has no entry in the table of keys`},
		{"table key without a field", reflect.TypeFor[struct {
			DryRun bool `yaml:"dryRun"`
		}](), "key metrics.listen of the table has no struct field tagged with it"},
		{"wrong type", reflect.TypeFor[struct {
			DryRun string `yaml:"dryRun"`
		}](), "key dryRun is a bool in the table but its field DryRun is a string"},
		{"renamed tag", reflect.TypeFor[struct {
			IRQ irq `yaml:"irqs"`
		}](), `field Cooldown (yaml "irqs.cooldown") has no entry in the table of keys`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildFileSchema(tt.typ)
			if err == nil || err.Error() != tt.want {
				t.Errorf("buildFileSchema = %v, want %s", err, tt.want)
			}
		})
	}
}
