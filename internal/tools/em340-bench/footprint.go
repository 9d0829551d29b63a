package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

func footprint(ctx context.Context, args []string, stdout, stderr io.Writer, header func()) error {
	fs := flag.NewFlagSet("footprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := footprintOptions{}
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long the bridge runs after its first reading")
	fs.DurationVar(&o.Poll, "poll", time.Second, "EM340_POLL_INTERVAL")
	fs.IntVar(&o.Baud, "baud", 9600, "line speed (simulator with wire timing)")
	fs.DurationVar(&o.Latency, "latency", 5*time.Millisecond, "simulated meter answer latency (an assumption)")
	fs.DurationVar(&o.Sample, "sample", 5*time.Second, "VmRSS sampling period")
	progress := fs.Bool("v", false, "print each sample to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *progress {
		o.Progress = func(el time.Duration, st procStats) {
			fmt.Fprintf(stderr, "%v: VmRSS %s, VmHWM %s, CPU %v\n", el.Round(time.Second), mib(st.RSS), mib(st.HWM), st.CPU)
		}
	}
	res, err := measureFootprint(ctx, o)
	if err != nil {
		return err
	}
	header()
	fmt.Fprintf(stdout, "Built with `%s`; the bridge runs against the simulator (%d baud, wire timing, %v latency) and Mosquitto, poll %v.\n\n",
		buildCommand, o.Baud, o.Latency, o.Poll)
	fmt.Fprintln(stdout, "| quantity | value |\n|---|---|")
	fmt.Fprintf(stdout, "| binary size (stripped, trimpath) | %d bytes (%s) |\n", res.BinaryBytes, mib(res.BinaryBytes))
	fmt.Fprintf(stdout, "| start to first state message | %s |\n", Ms(res.StartupToFirstState))
	fmt.Fprintf(stdout, "| measured span | %v (%d samples every %v) |\n", res.Duration.Round(time.Second), res.Samples, o.Sample)
	fmt.Fprintf(stdout, "| state messages in the span | %d |\n", res.StateMessages)
	fmt.Fprintf(stdout, "| VmRSS after first reading / at end / largest sample | %s / %s / %s |\n", mib(res.RSSStart), mib(res.RSSEnd), mib(res.RSSMax))
	fmt.Fprintf(stdout, "| VmHWM at end | %s |\n", mib(res.HWM))
	fmt.Fprintf(stdout, "| CPU time (utime+stime) in the span | %v = %.3f %% of one core |\n",
		res.CPU, 100*res.CPU.Seconds()/res.Duration.Seconds())
	fmt.Fprintf(stdout, "| CPU time since exec | %v |\n", res.CPUTotal)
	fmt.Fprintf(stdout, "| exit code after SIGTERM | %d |\n", res.ExitCode)
	fmt.Fprintf(stdout, "| WARN/ERROR lines in the bridge's log | %d |\n", len(res.Warnings))
	for i, w := range res.Warnings {
		if i == 5 {
			fmt.Fprintf(stdout, "\n… and %d more\n", len(res.Warnings)-i)
			break
		}
		fmt.Fprintf(stdout, "\n    %s\n", w)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// footprintOptions set up a footprint run of the built binary.
type footprintOptions struct {
	Duration time.Duration // how long the bridge runs after its first reading
	Poll     time.Duration // EM340_POLL_INTERVAL
	Baud     int           // line speed, with the simulator's wire timing
	Latency  time.Duration // the simulated meter's answer latency
	Sample   time.Duration // how often VmRSS is sampled
	Progress func(elapsed time.Duration, st procStats)
}

// footprintResult is what the kernel said about the bridge process.
type footprintResult struct {
	BinaryBytes         int64
	Duration            time.Duration // measured span, first reading to the last sample
	RSSStart, RSSEnd    int64         // VmRSS after the first reading and at the end
	RSSMax, HWM         int64         // largest sampled VmRSS; VmHWM at the end
	CPU                 time.Duration // utime+stime over the measured span
	CPUTotal            time.Duration // utime+stime since exec, including start-up
	StateMessages       int           // state messages the subscriber got in the span
	ExitCode            int           // after SIGTERM
	Samples             int
	StartupToFirstState time.Duration
	Warnings            []string // WARN and ERROR lines of the bridge's log
}

// measureFootprint builds the binary, runs it against the simulator and Mosquitto,
// and samples /proc/PID for o.Duration.
func measureFootprint(ctx context.Context, o footprintOptions) (res footprintResult, err error) {
	dir, err := os.MkdirTemp("", "em340-footprint-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "em340-bridge")
	if res.BinaryBytes, err = buildBridge(ctx, bin); err != nil {
		return res, err
	}
	device := filepath.Join(dir, "ttyUSB0")
	sim := emsim.New(emsim.Options{Serial: bridgetest.Serial, FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, WireTiming: true, Baud: o.Baud, Latency: o.Latency})
	if err := sim.Start(device); err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, sim.Close()) }()
	broker, err := brokertest.StartProcess(false)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, broker.Close()) }()
	sub, err := hass.Dial(ctx, broker.Addr(), "footprint-ha", "#")
	if err != nil {
		return res, err
	}
	defer sub.Close()
	topics, err := discovery.NewTopics("em340", "homeassistant", bridgetest.Serial)
	if err != nil {
		return res, err
	}

	logFile, err := os.Create(filepath.Join(dir, "bridge.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"EM340_SERIAL_DEVICE=" + device,
		fmt.Sprintf("EM340_SERIAL_BAUD=%d", o.Baud),
		"EM340_POLL_INTERVAL=" + o.Poll.String(),
		"EM340_MQTT_URL=" + broker.URL(),
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false
	defer func() {
		if !reaped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid

	first, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = sub.Await(first, 0, hass.On(topics.MeterState(), nil))
	cancel()
	if err != nil {
		return res, fmt.Errorf("the bridge published no reading: %w (log %s)", err, tail(logFile.Name()))
	}
	res.StartupToFirstState = time.Since(started)
	begin, mark := time.Now(), sub.Mark()
	st0, err := readProcStats(pid)
	if err != nil {
		return res, err
	}
	res.RSSStart, res.RSSMax = st0.RSS, st0.RSS
	last := st0
	for time.Since(begin) < o.Duration {
		if err := waitCtx(ctx, min(o.Sample, o.Duration-time.Since(begin))); err != nil {
			return res, err
		}
		st, err := readProcStats(pid)
		if err != nil {
			return res, fmt.Errorf("the bridge exited early: %w (log %s)", err, tail(logFile.Name()))
		}
		res.Samples++
		res.RSSMax = max(res.RSSMax, st.RSS)
		last = st
		if o.Progress != nil {
			o.Progress(time.Since(begin), st)
		}
	}
	res.Duration = time.Since(begin)
	res.RSSEnd, res.HWM, res.CPU, res.CPUTotal = last.RSS, last.HWM, last.CPU-st0.CPU, last.CPU
	for _, m := range sub.Messages(mark) {
		if m.Topic == topics.MeterState() {
			res.StateMessages++
		}
	}
	res.Warnings = warnings(logFile.Name())
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return res, err
	}
	select {
	case werr := <-exited:
		reaped = true
		res.ExitCode = cmd.ProcessState.ExitCode()
		if werr != nil && res.ExitCode == 0 {
			return res, werr
		}
	case <-time.After(10 * time.Second):
		return res, errors.New("the bridge did not exit within 10 s of SIGTERM")
	}
	return res, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

func warnings(path string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return out
}
