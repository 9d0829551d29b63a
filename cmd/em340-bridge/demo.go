package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"

	demopkg "github.com/em340-bridge/em340-bridge/internal/demo"
)

// demo shows the bridge without a meter, a broker or Docker: a simulated
// EM340, an embedded MQTT broker and the bridge, seen as Home Assistant sees
// them, with the adapter pulled out every so often.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: em340-bridge demo [flags]\n\n"+
			"Runs a simulated EM340 on a pseudo-terminal, an MQTT broker on a free loopback port and the\n"+
			"bridge, all in this process, and shows what Home Assistant sees. On a terminal, u unplugs the\n"+
			"simulated adapter and q quits.\n\nflags:\n")
		fs.PrintDefaults()
	}
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	every := fs.Duration("unplug-every", demopkg.DefaultUnplugEvery, "unplug the simulated adapter this often")
	outage := fs.Duration("outage", demopkg.DefaultOutage, "how long the adapter stays unplugged")
	noUnplug := fs.Bool("no-unplug", false, "never unplug by itself (the u key still does)")
	poll := fs.Duration("poll", demopkg.DefaultPoll, "the bridge's poll interval (at least 500ms)")
	plain := fs.Bool("plain", false, "plain lines even on a terminal")
	verbose := fs.Bool("verbose", false, "log the bridge, simulator and broker on stderr (implies -plain)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "em340-bridge demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	opts := demopkg.Options{Duration: *duration, UnplugEvery: *every, Outage: *outage, Poll: *poll,
		Plain: *plain || *verbose, Version: currentVersion(), Stdin: os.Stdin, Stdout: stdout}
	if *noUnplug {
		opts.UnplugEvery = -1
	}
	if *every <= 0 && !*noUnplug || *outage <= 0 {
		fmt.Fprintln(stderr, "em340-bridge demo: -unplug-every and -outage must be positive")
		return 2
	}
	if err := opts.Check(); err != nil {
		fmt.Fprintf(stderr, "em340-bridge demo: %v\n", err)
		return 2
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		// The serial library logs through the standard logger when it closes a
		// port that was unplugged; the demo does that on purpose.
		defer log.SetOutput(log.Writer())
		log.SetOutput(io.Discard)
	}
	if err := demopkg.Run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "em340-bridge demo: %v\n", err)
		return 1
	}
	return 0
}
