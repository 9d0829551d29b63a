// Command em340-bridge reads a Carlo Gavazzi EM340 energy meter over Modbus RTU
// and publishes it to Home Assistant over MQTT. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

const usage = `usage: em340-bridge [command]

commands:
  (none)       run the bridge, configured by EM340_* environment variables
  demo         run a simulated meter, an embedded broker and the bridge, and show what HA sees
  simulate     run a simulated EM340 on a pseudo-terminal and print its device path
  healthcheck  exit 0 if the running bridge is healthy, 1 if not (for Docker's HEALTHCHECK)
  addon        map Home Assistant add-on options to EM340_* variables, then run the bridge
  version      print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "":
		return runBridge(ctx, environ, stderr)
	case "healthcheck":
		return healthcheck(environ, stdout, stderr)
	case "simulate":
		return simulate(ctx, args, stdout, stderr)
	case "demo":
		return demo(ctx, args, stdout, stderr)
	case "addon":
		return addonRun(ctx, args, environ, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, currentVersion())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "em340-bridge: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func runBridge(ctx context.Context, environ []string, stderr io.Writer) int {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "em340-bridge: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	// goburrow/serial reports "could not restore setting" through the standard
	// log package when it closes an unplugged adapter: expected, so debug.
	stdlog.SetFlags(0)
	stdlog.SetOutput(slogWriter{log: log.With("component", "serial")})
	for _, name := range config.UnknownVariables(environ) {
		log.Warn("ignoring unknown variable (a typo?)", "variable", name)
	}
	log.Info("em340-bridge starting", "version", currentVersion(), "config", cfg)
	if err := bridge.Run(ctx, bridge.Options{Config: cfg, Version: currentVersion(), Logger: log}); err != nil {
		log.Error("em340-bridge stopped", "err", err)
		return 1
	}
	log.Info("em340-bridge stopped")
	return 0
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // checked by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func healthcheck(environ []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: invalid configuration:\n%v\n", err)
		return 1
	}
	st, err := bridge.CheckHealth(cfg.StatusFile, cfg.StallTimeout, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "healthy: MQTT connected=%v, serial link %s\n", st.MQTTConnected, st.Link)
	return 0
}

// slogWriter turns standard-library log lines into debug records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
