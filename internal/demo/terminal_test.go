package demo

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// screenReader collects what the demo draws on a pseudo-terminal.
type screenReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *screenReader) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *screenReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// waitFor waits until the screen shows text.
func (r *screenReader) waitFor(t *testing.T, text string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(r.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the screen never showed %q; it shows:\n%q", text, r.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunOnATerminal runs the demo on a pseudo-terminal as a user would: it
// draws a live panel, unplugs on u, quits on q and leaves the terminal as it
// found it.
func TestRunOnATerminal(t *testing.T) {
	t.Parallel()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer tty.Close()
	if err := pty.Setsize(master, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	var screen screenReader
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			_, _ = screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{UnplugEvery: -1, Outage: time.Second, Poll: time.Second, Stdin: tty, Stdout: tty})
	}()
	screen.waitFor(t, "last reading", 15*time.Second)
	if _, err := master.Write([]byte("u")); err != nil {
		t.Fatal(err)
	}
	screen.waitFor(t, "unplugged the USB-RS485 adapter", 5*time.Second)
	screen.waitFor(t, "recovered: a reading reached HA", 10*time.Second)
	screen.waitFor(t, "Energy import  12345.", 10*time.Second) // totals, once confirmed by a second read
	if _, err := master.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("q did not end the demo; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if ctx.Err() != nil {
		t.Fatal("the demo ran until its context's deadline, not until q")
	}

	out := screen.String()
	for _, want := range []string{
		"── Home Assistant now ", "Energy import  12345.", " kWh", "EM340 bridge: link online",
		"keys: u unplug now · q quit",
		"\x1b[?25l", // the cursor hidden while the panel is redrawn …
		"\r\n",      // raw mode: the demo moves to a new line itself
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the screen lacks %q", want)
		}
	}
	if !strings.HasSuffix(strings.TrimRight(out, " "), "\x1b[?25h") { // … and shown again at the end
		t.Errorf("the cursor is not shown again at the end: %q", out[max(0, len(out)-80):])
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("terminal modes not restored:\n before %+v\n after  %+v", *before, *after)
	}
	tty.Close() // the last slave fd: the master's reader gets EIO (closing the master would not wake it)
	select {
	case <-reading:
	case <-time.After(5 * time.Second):
		t.Error("the pty reader did not end")
	}
}
