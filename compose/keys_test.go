package compose

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestKeyTablesCoverEveryServiceKey: every key compose-go can load into a
// service, and every service key of the specification, is either
// translated or has a warning reason. A compose-go upgrade that adds a
// key fails here until someone decides what sstack does with it.
func TestKeyTablesCoverEveryServiceKey(t *testing.T) {
	known := map[string]bool{}
	for _, k := range translatedServiceKeys {
		if _, dup := unsupportedServiceKeys[k]; dup {
			t.Errorf("%s is both translated and unsupported", k)
		}
		known[k] = true
	}
	for k := range unsupportedServiceKeys {
		known[k] = true
	}
	structKeys := map[string]bool{}
	for _, k := range serviceYAMLKeys() {
		structKeys[k] = true
		if !known[k] {
			t.Errorf("service key %q is neither translated nor warned about", k)
		}
	}
	for k := range known {
		if !structKeys[k] {
			t.Errorf("%q is in a key table but not a field of types.ServiceConfig", k)
		}
	}
	for _, p := range schema.AttributePaths() {
		parts := p.Parts()
		if len(parts) == 3 && parts[0] == "services" && parts[1] == "*" && !known[parts[2]] {
			t.Errorf("specification key services.*.%s is neither translated nor warned about", parts[2])
		}
	}

	handledDeploy := []string{"mode", "replicas", "restart_policy", "resources", "placement", "update_config", "rollback_config"}
	walkYAMLFields(reflect.ValueOf(types.DeployConfig{}), func(k string, _ reflect.Value) {
		if _, ok := unsupportedDeployKeys[k]; !ok && !slices.Contains(handledDeploy, k) {
			t.Errorf("deploy key %q is neither translated nor warned about", k)
		}
	})
}

// TestEveryUnsupportedKeyWarns sets each unsupported key, alone, on a
// service and checks Translate names it in a warning.
func TestEveryUnsupportedKeyWarns(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img.sif")
	touch(t, img)
	check := func(key string, set func(*types.ServiceConfig) bool) {
		t.Helper()
		sc := types.ServiceConfig{Name: "s"}
		sc.Image = img
		if !set(&sc) {
			t.Errorf("%s: no field to set", key)
			return
		}
		p := &types.Project{Name: "p", WorkingDir: dir, Services: types.Services{"s": sc}}
		plan, err := Translate(p, Options{StateBase: dir, Environ: []string{}})
		if err != nil {
			t.Errorf("%s: %v", key, err)
			return
		}
		if !hasWarning(plan, "s", key) {
			t.Errorf("%s set but not warned about: %v", key, plan.Warnings)
		}
	}
	for key := range unsupportedServiceKeys {
		check(key, func(sc *types.ServiceConfig) bool { return setField(reflect.ValueOf(sc).Elem(), key) })
	}
	for key := range unsupportedDeployKeys {
		check("deploy."+key, func(sc *types.ServiceConfig) bool {
			sc.Deploy = &types.DeployConfig{}
			return setField(reflect.ValueOf(sc.Deploy).Elem(), key)
		})
	}
}

// setField gives the field of struct v with YAML key key a non-zero value.
func setField(v reflect.Value, key string) bool {
	done := false
	walkYAMLFields(v, func(k string, f reflect.Value) {
		if k == key && !done {
			fill(f)
			done = !f.IsZero()
		}
	})
	return done
}

// fill makes v non-zero with the simplest value of its type.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(k)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() && !strings.HasPrefix(v.Type().Field(i).Tag.Get("yaml"), "#") {
				fill(f)
				if !v.IsZero() {
					return
				}
			}
		}
	}
}

// serviceYAMLKeys is every key types.ServiceConfig can hold.
func serviceYAMLKeys() []string {
	var keys []string
	walkYAMLFields(reflect.ValueOf(types.ServiceConfig{}), func(key string, _ reflect.Value) {
		keys = append(keys, key)
	})
	return keys
}
