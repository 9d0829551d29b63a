package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/em340-bridge/em340-bridge/addon"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

// addonRun turns the add-on's options and the Supervisor's MQTT service into
// EM340_* variables and runs the bridge with them: the bridge itself stays
// configured only by environment. With -user it reads the options as root
// (only root can), then runs the bridge as that user.
func addonRun(ctx context.Context, args, environ []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("addon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	options := fs.String("options", "/data/options.json", "the add-on options the Supervisor wrote")
	supervisor := fs.String("supervisor", addon.DefaultSupervisorURL, "the Supervisor API")
	user := fs.String("user", "", "once the options are read, run the bridge as this `uid:gid`, with the groups of the host's serial nodes under -dev")
	dev := fs.String("dev", "/dev", "where the host's device nodes are")
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
	if *user != "" {
		if err := becomeUser(*user, *dev, vars, stderr); err != nil {
			fmt.Fprintf(stderr, "em340-bridge addon: %v\n", err)
			return 2
		}
	}
	// The user set options, not variables: name those in what is wrong.
	// Checked as the bridge's user, so a file it cannot read is caught here.
	if _, err := config.Load(vars); err != nil {
		fmt.Fprintf(stderr, "em340-bridge addon: invalid options:\n%s\n", addon.OptionNames(err.Error()))
		return 2
	}
	return runBridge(ctx, withVariables(environ, vars), stderr)
}

// becomeUser drops root for the user given as uid:gid, adding the groups
// that own the host's serial nodes so the adapter can be opened, even one
// plugged in later. Without a node to learn that group from, a bridge that
// needs a serial adapter keeps root rather than fail to open it.
func becomeUser(spec, dev string, vars []string, stderr io.Writer) error {
	u, err := addon.ParseUser(spec)
	if err != nil {
		return err
	}
	if os.Getuid() == u.UID {
		return nil // already
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	device := variable(vars, "EM340_SERIAL_DEVICE")
	u.Groups, err = addon.SerialGroups(dev, device)
	if errors.Is(err, addon.ErrNoSerialGroup) {
		log.Warn("keeping root: the serial adapter's group is unknown until a serial device node exists at start", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if err := addon.Become(u); err != nil {
		return err
	}
	log.Info("running the bridge unprivileged", "uid", u.UID, "gid", u.GID, "groups", u.Groups)
	return nil
}

// variable is name's value in vars (KEY=value strings), or "".
func variable(vars []string, name string) string {
	for _, kv := range vars {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
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
