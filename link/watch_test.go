package link

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The watch must see the node come back whatever udev deleted on the way:
// each layout removes the path (and directories, at every depth) and makes it
// again, and the test counts the wake-ups: one must arrive per re-creation.
// Plain files and symlinks stand in for udev's; the simulator's tree mode is
// exercised by the link tests. The nodes are not named tty*: a tty made in a
// watched directory wakes the watch by itself (it may be a USB adapter), and
// here only the configured path coming back may.
func TestWatchSeesThePathComeBack(t *testing.T) {
	type step func(t *testing.T, root string)
	mkdir := func(rel string) step {
		return func(t *testing.T, root string) { must(t, os.MkdirAll(filepath.Join(root, rel), 0o755)) }
	}
	rmAll := func(rel string) step {
		return func(t *testing.T, root string) { must(t, os.RemoveAll(filepath.Join(root, rel))) }
	}
	node := func(rel string) step {
		return func(t *testing.T, root string) { must(t, os.WriteFile(filepath.Join(root, rel), nil, 0o600)) }
	}
	rm := func(rel string) step {
		return func(t *testing.T, root string) { must(t, os.Remove(filepath.Join(root, rel))) }
	}
	// link makes rel -> target under a temporary name and renames it into place,
	// as udev does (IN_MOVED_TO, not IN_CREATE).
	link := func(target, rel string) step {
		return func(t *testing.T, root string) {
			at := filepath.Join(root, rel)
			tmp := filepath.Join(filepath.Dir(at), ".#"+filepath.Base(at)+".tmp")
			must(t, os.Symlink(target, tmp))
			must(t, os.Rename(tmp, at))
		}
	}
	chmod := func(rel string) step {
		return func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, rel), 0o660)) }
	}
	const byID = "serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZ3P1-if00-port0"
	tests := []struct {
		name     string
		device   string // relative to root
		setup    []step // the adapter plugged in
		unplug   []step
		replug   []step
		resolves string // what the device resolves to after the replug, relative to root
	}{
		{name: "plain node", device: "node0",
			setup: []step{node("node0")}, unplug: []step{rm("node0")}, replug: []step{node("node0")},
			resolves: "node0"},
		{name: "node made 0600, then chmod", device: "node0",
			setup: []step{node("node0")}, unplug: []step{rm("node0")}, replug: []step{node("node0"), chmod("node0")},
			resolves: "node0"},
		{name: "by-id, udev deletes serial/ and re-creates it, link by rename", device: byID,
			setup:    []step{node("node0"), mkdir("serial/by-path"), mkdir("serial/by-id"), link("../../node0", byID)},
			unplug:   []step{rm("node0"), rmAll("serial/by-path"), rm(byID), rmAll("serial/by-id"), rmAll("serial")},
			replug:   []step{node("node0"), mkdir("serial"), mkdir("serial/by-path"), mkdir("serial/by-id"), link("../../node0", byID)},
			resolves: "node0"},
		{name: "by-id re-pointed to node1", device: byID,
			setup:    []step{node("node0"), mkdir("serial/by-id"), link("../../node0", byID)},
			unplug:   []step{rm(byID), rmAll("serial")},
			replug:   []step{node("node1"), mkdir("serial/by-id"), link("../../node1", byID)},
			resolves: "node1"},
		{name: "by-id, only its own directory deleted", device: byID,
			setup:    []step{node("node0"), mkdir("serial/by-id"), link("../../node0", byID)},
			unplug:   []step{rmAll("serial/by-id")},
			replug:   []step{mkdir("serial/by-id"), link("../../node0", byID)},
			resolves: "node0"},
		{name: "deep path, directories re-created at once", device: "a/b/c/d/node0",
			setup: []step{mkdir("a/b/c/d"), node("a/b/c/d/node0")}, unplug: []step{rmAll("a")},
			replug: []step{mkdir("a/b/c/d"), node("a/b/c/d/node0")}, resolves: "a/b/c/d/node0"},
		{name: "deep path, directories re-created one by one", device: "a/b/c/d/node0",
			setup: []step{mkdir("a/b/c/d"), node("a/b/c/d/node0")}, unplug: []step{rmAll("a/b")},
			replug: []step{mkdir("a/b"), mkdir("a/b/c"), mkdir("a/b/c/d"), node("a/b/c/d/node0")}, resolves: "a/b/c/d/node0"},
		{name: "configured before anything exists", device: "x/y/node0",
			replug: []step{mkdir("x/y"), node("x/y/node0")}, resolves: "x/y/node0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			device := filepath.Join(root, tt.device)
			for _, s := range tt.setup {
				s(t, root)
			}
			present := func() bool { _, err := os.Stat(device); return err == nil }
			w, err := newDirWatch(func() []string { return []string{device, ""} }, present, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			runWatch(t, w)

			for cycle := 0; cycle < 3; cycle++ {
				if len(tt.unplug) > 0 {
					for _, s := range tt.unplug {
						s(t, root)
					}
					waitSignal(t, w.changed, "changed")
					if _, err := os.Stat(device); err == nil {
						t.Fatal("still there after unplug")
					}
				}
				drain(w.appeared)
				for _, s := range tt.replug {
					s(t, root)
				}
				waitSignal(t, w.appeared, "appeared")
				got, err := filepath.EvalSymlinks(device)
				if err != nil || got != filepath.Join(root, tt.resolves) {
					t.Fatalf("cycle %d: resolves to %q, %v", cycle, got, err)
				}
				if len(tt.unplug) == 0 {
					break
				}
			}
		})
	}
}

// What wakes a reconnect: a tty made or given a new mode (a USB adapter's
// node, udev's chmod of it), or a change of mode of the node last tried,
// whatever its name (a pty stands in for it here). Not a write: every request
// on any tty in /dev is one, and a usb: or by-id link would enumerate the
// serial ports for each. Here the configured path is missing (the adapter
// is away), as during an outage.
func TestWatchWakesForNewTTYsAndModesNotWrites(t *testing.T) {
	touch := func(path string) { must(t, os.WriteFile(path, nil, 0o600)) }
	tests := []struct {
		name  string
		op    func(root string)
		wakes bool
	}{
		{"a write to a tty", func(root string) { must(t, os.WriteFile(filepath.Join(root, "ttyS1"), []byte("x"), 0o600)) }, false},
		{"a tty made", func(root string) { touch(filepath.Join(root, "ttyUSB1")) }, true},
		{"a tty made by rename", func(root string) {
			touch(filepath.Join(root, ".tmp"))
			must(t, os.Rename(filepath.Join(root, ".tmp"), filepath.Join(root, "ttyACM0")))
		}, true},
		{"a tty's mode changed", func(root string) { must(t, os.Chmod(filepath.Join(root, "ttyS1"), 0o660)) }, true},
		{"the mode of the node last tried changed", func(root string) { must(t, os.Chmod(filepath.Join(root, "pts", "7"), 0o660)) }, true},
		{"another file's mode changed", func(root string) { must(t, os.Chmod(filepath.Join(root, "null"), 0o666)) }, false},
		{"another file made", func(root string) { touch(filepath.Join(root, "kmsg")) }, false},
		{"a file removed", func(root string) { must(t, os.Remove(filepath.Join(root, "null"))) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			must(t, os.Mkdir(filepath.Join(root, "pts"), 0o755))
			for _, f := range []string{"ttyS1", "null", "pts/7"} {
				touch(filepath.Join(root, f))
			}
			node := filepath.Join(root, "ttyUSB0") // the node last tried: a link to a pty, as in tree mode
			must(t, os.Symlink("pts/7", node))
			device := filepath.Join(root, "serial", "by-id", "usb-x") // missing
			present := func() bool { _, err := os.Stat(device); return err == nil }
			// Every wake-up is logged with its event, where it is signalled.
			wakes := make(chan string, 64)
			w, err := newDirWatch(func() []string { return []string{device, node} }, present, slog.New(wakeLog{wakes}))
			if err != nil {
				t.Fatal(err)
			}
			runWatch(t, w)

			tt.op(root)
			// A sentinel that wakes it: events are handled in order, so once
			// its wake-up is seen, tt.op's events have all been handled.
			sentinel := filepath.Join(root, "ttyUSB9")
			touch(sentinel)
			var before []string
			for deadline := time.After(hangGuard); ; {
				select {
				case ev := <-wakes:
					if !strings.Contains(ev, sentinel) {
						before = append(before, ev)
						continue
					}
				case <-deadline:
					t.Fatal("the sentinel never woke the link")
				}
				break
			}
			if woke := len(before) > 0; woke != tt.wakes {
				t.Errorf("woke the link: %v (%q), want %v", woke, before, tt.wakes)
			}
		})
	}
}

// wakeLog passes on the event of every "the device may be there" record.
type wakeLog struct{ events chan<- string }

func (h wakeLog) Enabled(context.Context, slog.Level) bool { return true }
func (h wakeLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h wakeLog) WithGroup(string) slog.Handler            { return h }
func (h wakeLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "the device may be there" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" {
			h.events <- a.Value.String()
		}
		return true
	})
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// waitSignal waits for one signal; the bound only detects a missed wake-up.
func waitSignal(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangGuard):
		t.Fatalf("no %q signal within %s: the watch missed it", what, hangGuard)
	}
}

func TestWatchDirs(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "serial"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "ttyUSB0"), nil, 0o600))
	byID := filepath.Join(root, "serial", "by-id", "usb-x")
	has := func(dirs []string, want ...string) bool {
		for _, w := range want {
			found := false
			for _, d := range dirs {
				found = found || d == w
			}
			if !found {
				return false
			}
		}
		return true
	}
	dirs := watchDirs([]string{byID, ""})
	if !has(dirs, root, filepath.Join(root, "serial")) || has(dirs, filepath.Join(root, "serial", "by-id")) || has(dirs, "/") {
		t.Fatalf("by-id missing: %v", dirs)
	}
	must(t, os.Mkdir(filepath.Join(root, "serial", "by-id"), 0o755))
	must(t, os.Symlink("../../ttyUSB0", byID))
	other := t.TempDir()
	dirs = watchDirs([]string{byID, filepath.Join(other, "pts0")})
	if !has(dirs, root, filepath.Join(root, "serial"), filepath.Join(root, "serial", "by-id"), other) {
		t.Fatalf("by-id present: %v", dirs)
	}
}

// runWatch runs w (already on its directories: newDirWatch) until the test ends.
func runWatch(t *testing.T, w *dirWatch) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Go(func() { w.run(ctx) })
	t.Cleanup(func() { cancel(); running.Wait(); _ = w.close() })
}
