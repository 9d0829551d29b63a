// Command em340-bench measures the bridge's speed and robustness numbers that
// docs/BENCHMARKS.md quotes. Run it from the module root:
//
//	go run ./internal/tools/em340-bench <subcommand> [flags]
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

	"github.com/em340-bridge/em340-bridge/internal/proof"
)

const usage = `usage: go run ./internal/tools/em340-bench <subcommand> [flags]

subcommands:
  snapshot   requests and wire time of one snapshot at 9600–115200 baud, beside the
             computed wire limit, the predecessor's 20-register reads and one request per value
  recovery   replug-to-first-reading (short and long outages), detection of an unplug,
             and reading-to-MQTT latency, with the whole bridge in-process against Mosquitto
  restart    time from a broker restart to the next state message, idle and mid-publish
  footprint  resident memory and CPU time of the built binary at a 1 s poll; binary size
  soak       unplug/replug cycles with broker restarts and meter mutes, checking
             resumption and goroutine/fd growth
  machine    print the machine description used in the report

Each prints Markdown for docs/BENCHMARKS.md; -h after a subcommand lists its flags.
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
	header := func() {
		fmt.Fprintf(stdout, "Command: `go run ./internal/tools/em340-bench %s`  \n", strings.Join(args, " "))
		fmt.Fprintf(stdout, "Machine: %s\n\n", proof.ThisMachine())
	}
	var err error
	switch cmd {
	case "snapshot":
		err = snapshot(ctx, rest, stdout, stderr, header)
	case "recovery":
		err = recovery(ctx, rest, stdout, stderr, header)
	case "restart":
		err = restart(ctx, rest, stdout, stderr, header)
	case "footprint":
		err = footprint(ctx, rest, stdout, stderr, header)
	case "soak":
		err = soak(ctx, rest, stdout, stderr, header)
	case "machine":
		fmt.Fprintln(stdout, proof.ThisMachine())
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
