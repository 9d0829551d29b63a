package addon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/em340-bridge/em340-bridge/internal/config"
)

// readOptions parses the flat JSON object the Supervisor writes to
// /data/options.json and returns each set option as its EM340_* variable.
// Unknown options are errors rather than warnings: the Supervisor already
// drops options missing from config.yaml's schema, so an unknown one here
// means config.yaml and the bridge disagree, which must not pass silently.
func readOptions(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the add-on options: %w", err)
	}
	var opts map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	// Keep numbers as written: 1.5 must stay "1.5", not become "1.5e+00".
	dec.UseNumber()
	if err := dec.Decode(&opts); err != nil {
		return nil, fmt.Errorf("reading the add-on options %s: not a JSON object: %w", path, err)
	}

	variables := map[string]string{}
	for _, v := range config.Variables() {
		variables[config.AddonOption(v.Name)] = v.Name
	}
	names := make([]string, 0, len(opts))
	for name := range opts {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a stable order

	env := map[string]string{}
	var errs []error
	for _, name := range names {
		variable, ok := variables[name]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown add-on option %q: the bridge has no such setting", name))
			continue
		}
		value, set, err := optionValue(opts[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("add-on option %q: %w", name, err))
			continue
		}
		if set {
			env[variable] = value
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return env, nil
}

// optionValue renders one option as the bridge expects it in its variable.
// A null counts as unset. Errors name the kind of value, never the value:
// it may be a password.
func optionValue(v any) (value string, set bool, err error) {
	switch v := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	case json.Number:
		return v.String(), true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case []any:
		return "", false, errors.New("a list, but every setting is a single value")
	case map[string]any:
		return "", false, errors.New("an object, but every setting is a single value")
	}
	return "", false, fmt.Errorf("unexpected JSON value of type %T", v)
}
