package stack

import (
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestHonouredKeysExist catches a misspelt honoured key, which would leave
// the key it meant reported as unsupported or, worse, an unrelated key
// quietly honoured.
func TestHonouredKeysExist(t *testing.T) {
	for _, tc := range []struct {
		what string
		typ  reflect.Type
		keys keySet
	}{
		{"service", reflect.TypeFor[types.ServiceConfig](), serviceKeys},
		{"network", reflect.TypeFor[types.NetworkConfig](), networkKeys},
	} {
		known := map[string]bool{}
		yamlPaths(tc.typ, "", known, map[reflect.Type]bool{})
		for k := range tc.keys {
			if !known[k] {
				t.Errorf("%s key %q is not a compose-go field", tc.what, k)
			}
		}
	}
}

// yamlPaths records every yaml path of typ, "*" standing for a map key.
func yamlPaths(typ reflect.Type, prefix string, out map[string]bool, seen map[reflect.Type]bool) {
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		yamlPaths(typ.Elem(), prefix, out, seen)
	case reflect.Map:
		yamlPaths(typ.Elem(), join(prefix, "*"), out, seen)
	case reflect.Struct:
		if seen[typ] {
			return
		}
		seen[typ] = true
		defer delete(seen, typ)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if strings.Contains(opts, "inline") {
				yamlPaths(f.Type, prefix, out, seen)
				continue
			}
			if name == "" || name == "-" || strings.HasPrefix(name, "#") {
				continue
			}
			out[join(prefix, name)] = true
			yamlPaths(f.Type, join(prefix, name), out, seen)
		}
	}
}

// TestUnsupportedKeys checks the walk on its own: set fields not honoured
// are named by path, map keys by name, extensions never.
func TestUnsupportedKeys(t *testing.T) {
	retries := uint64(3)
	svc := types.ServiceConfig{
		Name: "web",
		ContainerSpec: types.ContainerSpec{
			Image:      "nginx",
			Privileged: true,
			Networks: map[string]*types.ServiceNetworkConfig{
				"front": {Aliases: []string{"www"}, Ipv4Address: "10.0.0.2"},
				"back":  nil,
			},
		},
		WorkloadSpec: types.WorkloadSpec{
			HealthCheck: &types.HealthCheckConfig{Retries: &retries, StartInterval: new(types.Duration)},
		},
		Extensions: types.Extensions{"x-team": "web"},
	}
	got := strings.Join(unsupportedKeys(svc, serviceKeys), ", ")
	if want := "healthcheck.start_interval, networks.front.ipv4_address, privileged"; got != want {
		t.Errorf("unsupportedKeys = %q, want %q (a zero start_interval was written, so it is set)", got, want)
	}
}
