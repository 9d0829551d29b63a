package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/em340-bridge/em340-bridge/addon"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

// addonRun turns the add-on's options and the Supervisor's MQTT service into
// EM340_* variables and runs the bridge with them: the bridge itself stays
// configured only by environment.
func addonRun(ctx context.Context, args, environ []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("addon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	options := fs.String("options", "/data/options.json", "the add-on options the Supervisor wrote")
	supervisor := fs.String("supervisor", addon.DefaultSupervisorURL, "the Supervisor API")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	token := os.Getenv("SUPERVISOR_TOKEN")
	if token == "" {
		token = os.Getenv("HASSIO_TOKEN") // the legacy name, same value
	}
	vars, err := addon.Environ(ctx, *options, addon.Supervisor{URL: *supervisor, Token: token})
	if err != nil {
		fmt.Fprintf(stderr, "em340-bridge addon: %v\n", err)
		return 2
	}
	// The user set options, not variables: name those in what is wrong.
	if _, err := config.Load(vars); err != nil {
		fmt.Fprintf(stderr, "em340-bridge addon: invalid options:\n%s\n", addon.OptionNames(err.Error()))
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
