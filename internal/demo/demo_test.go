package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if anything the demo started outlives it: the
// broker, the bridge, the simulator and the subscriber all have goroutines.
// It quiets goburrow/serial, which reports closing an unplugged adapter
// ("could not restore setting") through the standard log package.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to limit for every goroutine of the demo's parts
// to end, and returns the stacks of those that did not.
func leakedGoroutines(limit time.Duration) string {
	parts := []string{"mochi-mqtt", "paho.golang", "em340-bridge/internal/bridge", "em340-bridge/link",
		"em340-bridge/meter", "em340-bridge/internal/demo.", "em340-bridge/internal/bridgetest", "em340-bridge/internal/hass"}
	deadline := time.Now().Add(limit)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "leakedGoroutines") {
				continue
			}
			for _, p := range parts {
				if strings.Contains(g, p) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunTellsTheStory runs the demo as a test reads it (stdout not a
// terminal) with a short unplug cycle, and reads back what a user would.
func TestRunTellsTheStory(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	start := time.Now()
	err := Run(context.Background(), Options{Duration: 7 * time.Second, UnplugEvery: 3 * time.Second,
		Outage: 1500 * time.Millisecond, Poll: time.Second, Version: "test", Stdout: &out})
	text := out.String()
	t.Logf("ran %s; output:\n%s", time.Since(start).Round(time.Millisecond), text)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(text, "\x1b") {
		t.Error("escape sequences in plain output")
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`mosquitto_sub -p \d+ -t '#' -v`),
		regexp.MustCompile(`discovered device "EM340 bridge" \(em340-bridge, version test\): 5 entities`),
		regexp.MustCompile(`discovered device "EM340 235411W" \(Carlo Gavazzi EM340, serial 235411W, version B0\): \d+ entities`),
		regexp.MustCompile(`voltage \(V\) +Voltage L1-N, Voltage L2-N`),
		regexp.MustCompile(`energy \(kWh\) +Energy import, `),
		regexp.MustCompile(`HA    reading: L1 2\d\d\.\d V, L2 2\d\d\.\d V, L3 2\d\d\.\d V, power -?\d+\.\d W, \d\d\.\d Hz, ` +
			`import \d+\.\d{3} kWh, export \d+\.\d{3} kWh`),
		regexp.MustCompile(`HA    EM340 235411W: available`),
		regexp.MustCompile(`demo  unplugged the USB-RS485 adapter; it goes back in after 1\.5 s`),
		regexp.MustCompile(`HA    link reconnecting \(adapter missing\)`),
		regexp.MustCompile(`HA    EM340 235411W: unavailable`),
		regexp.MustCompile(`demo  plugged the adapter back in after 1\.\d s`), // 1.5 s, unless the machine is busy
		regexp.MustCompile(`HA    link online \(reconnects 1, last outage \d+\.\d s\)`),
		regexp.MustCompile(`HA    EM340 bridge: unavailable`), // its goodbye as it stopped
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s", want)
		}
	}
	// The recovery: from replug to the first reading at HA, against the
	// predecessor, who after 1.5 s out retries 2 s after the loss: 0.5 s after the replug.
	rec := regexp.MustCompile(`recovered: a reading reached HA (\d+\.\d\d) s after the replug; ` +
		`em340d would have sat idle for (\d\.\d) s before even retrying \(outage (1\.\d) s\)`).FindStringSubmatch(text)
	if rec == nil {
		t.Fatal("no recovery with its time")
	}
	took, idle, outage := number(t, rec[1]), number(t, rec[2]), number(t, rec[3])
	if took <= 0 || took > 5 {
		t.Errorf("recovered after %s s", rec[1])
	}
	if d := idle + outage - 2; d < -0.15 || d > 0.15 {
		t.Errorf("the predecessor idle %s s after an outage of %s s; its retry is at 2 s", rec[2], rec[3])
	}
	if !regexp.MustCompile(`1 unplug: readings reached HA \d+\.\d\d s after the replug`).MatchString(text) {
		t.Error("no summary")
	}
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
