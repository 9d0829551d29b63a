// Command em340-bench measures the end-to-end figures docs/BENCHMARKS.md
// quotes, with the whole bridge against the simulator and a real Mosquitto.
// Run it from the module root:
//
//	go run ./internal/tools/em340-bench <subcommand> [flags]
//
// The figures of one part (decoding, planning, payloads, one snapshot over the
// pty) are go test benchmarks next to the code they measure.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `usage: go run ./internal/tools/em340-bench <subcommand> [flags]

subcommands:
  recovery   start → first state and replug → first state (short and long outages) beside
             the wire minimum of the requests made; detection of an unplug; reading → MQTT
  snapshot   requests and wire time of one snapshot at 9600–115200 baud, beside the
             computed wire limit, the predecessor's 20-register reads and one request per value
  restart    time from a broker restart to the next state message, idle and mid-publish
  footprint  resident memory and CPU time of the built binary at a 1 s poll; binary size
  soak       unplug/replug cycles with broker restarts and meter mutes, checking
             resumption and goroutine/fd growth
  machine    print the machine and its load, as the reports head them

Each prints Markdown for docs/BENCHMARKS.md, headed by its command line, the
machine and its load; -h after a subcommand lists its flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// simonvetter/modbus prints "could not restore setting" through the
	// standard logger when a hung-up port is closed; every unplug does that.
	log.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	before := ThisMachine()
	header := func() {
		after := ThisMachine()
		fmt.Fprintf(stdout, "Command: `go run ./internal/tools/em340-bench %s`  \n", strings.Join(args, " "))
		fmt.Fprintf(stdout, "Machine: %s  \n", after)
		fmt.Fprintf(stdout, "Load (load average 1/5/15 min, as uptime shows it): %s at the start, %s at the end; ran %s\n\n",
			before.Load, after.Load, after.Date.Sub(before.Date).Round(1e9))
	}
	var err error
	switch cmd {
	case "recovery":
		err = recovery(ctx, rest, stdout, stderr, header)
	case "snapshot":
		err = snapshot(ctx, rest, stdout, stderr, header)
	case "restart":
		err = restart(ctx, rest, stdout, stderr, header)
	case "footprint":
		err = footprint(ctx, rest, stdout, stderr, header)
	case "soak":
		err = soak(ctx, rest, stdout, stderr, header)
	case "machine":
		fmt.Fprintf(stdout, "%s; load average %s\n", before, before.Load)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "em340-bench: unknown subcommand %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "em340-bench %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
