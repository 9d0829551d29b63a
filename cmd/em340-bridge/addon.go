package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/em340-bridge/em340-bridge/addon"
)

// addonOptions is where the Supervisor writes the add-on's options.
const addonOptions = "/data/options.json"

// addonRun turns the add-on's options and the Supervisor's MQTT service into
// EM340_* variables and runs the bridge with them: the bridge itself stays
// configured only by environment.
func addonRun(ctx context.Context, environ []string, stderr io.Writer) int {
	token := os.Getenv("SUPERVISOR_TOKEN")
	if token == "" {
		token = os.Getenv("HASSIO_TOKEN") // the legacy name, same value
	}
	vars, err := addon.Environ(ctx, addonOptions, addon.Supervisor{Token: token})
	if err != nil {
		fmt.Fprintf(stderr, "em340-bridge addon: %v\n", err)
		return 2
	}
	return runBridge(ctx, withVariables(environ, vars), stderr)
}

// withVariables replaces every EM340_* entry of environ with vars: getenv
// keeps the first of two entries, so a stale one must not survive.
func withVariables(environ, vars []string) []string {
	out := make([]string, 0, len(environ)+len(vars))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "EM340_") {
			out = append(out, kv)
		}
	}
	return append(out, vars...)
}
