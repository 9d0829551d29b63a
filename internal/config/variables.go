package config

import (
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// Variable describes one setting, as declared by Config's struct tags.
type Variable struct {
	Name    string // EM340_*
	Default string // applied when unset or empty; "" = none
	Allowed string // accepted values
	Meaning string
	Secret  bool // a credential: never shown in errors or logs
}

// Variables lists every variable Load reads, in declaration order.
func Variables() []Variable {
	var vs []Variable
	for _, f := range fields() {
		vs = append(vs, f.Variable)
	}
	return vs
}

// UnknownVariables returns the EM340_* names in environ that Load does not
// read, sorted; they are almost always typos worth a warning.
func UnknownVariables(environ []string) []string {
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v.Name] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return slices.Compact(unknown)
}

// LogValue logs every setting under its add-on option name; secrets are
// redacted by their type, so adding a field cannot leak one.
func (c Config) LogValue() slog.Value {
	rv := reflect.ValueOf(c)
	var attrs []slog.Attr
	for _, f := range fields() {
		v := rv.Field(f.index).Interface()
		if lv, ok := v.(slog.LogValuer); ok {
			v = lv.LogValue()
		}
		attrs = append(attrs, slog.Any(AddonOption(f.Name), v))
	}
	return slog.GroupValue(attrs...)
}

// field is a Config field that is read from a variable.
type field struct {
	index int
	Variable
}

func fields() []field {
	t := reflect.TypeFor[Config]()
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name := varName(sf)
		if name == "" {
			continue
		}
		fs = append(fs, field{index: i, Variable: Variable{
			Name:    name,
			Default: sf.Tag.Get("envDefault"),
			Allowed: sf.Tag.Get("allowed"),
			Meaning: sf.Tag.Get("doc"),
			Secret:  sf.Type == reflect.TypeFor[Secret](),
		}})
	}
	return fs
}

// varName is the variable in sf's env tag, without options such as ",file".
func varName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("env"), ",")
	return name
}
