package link

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The watch must see the node come back whatever udev deleted on the way:
// each layout removes the path (and directories, at every depth) and makes it
// again, and the test counts the wake-ups: one must arrive per re-creation.
// Plain files and symlinks stand in for udev's; the simulator's tree mode is
// exercised by the link tests.
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
		{name: "plain node", device: "ttyUSB0",
			setup: []step{node("ttyUSB0")}, unplug: []step{rm("ttyUSB0")}, replug: []step{node("ttyUSB0")},
			resolves: "ttyUSB0"},
		{name: "node made 0600, then chmod", device: "ttyUSB0",
			setup: []step{node("ttyUSB0")}, unplug: []step{rm("ttyUSB0")}, replug: []step{node("ttyUSB0"), chmod("ttyUSB0")},
			resolves: "ttyUSB0"},
		{name: "by-id, udev deletes serial/ and re-creates it, link by rename", device: byID,
			setup:    []step{node("ttyUSB0"), mkdir("serial/by-path"), mkdir("serial/by-id"), link("../../ttyUSB0", byID)},
			unplug:   []step{rm("ttyUSB0"), rmAll("serial/by-path"), rm(byID), rmAll("serial/by-id"), rmAll("serial")},
			replug:   []step{node("ttyUSB0"), mkdir("serial"), mkdir("serial/by-path"), mkdir("serial/by-id"), link("../../ttyUSB0", byID)},
			resolves: "ttyUSB0"},
		{name: "by-id re-pointed to ttyUSB1", device: byID,
			setup:    []step{node("ttyUSB0"), mkdir("serial/by-id"), link("../../ttyUSB0", byID)},
			unplug:   []step{rm(byID), rmAll("serial")},
			replug:   []step{node("ttyUSB1"), mkdir("serial/by-id"), link("../../ttyUSB1", byID)},
			resolves: "ttyUSB1"},
		{name: "by-id, only its own directory deleted", device: byID,
			setup:    []step{node("ttyUSB0"), mkdir("serial/by-id"), link("../../ttyUSB0", byID)},
			unplug:   []step{rmAll("serial/by-id")},
			replug:   []step{mkdir("serial/by-id"), link("../../ttyUSB0", byID)},
			resolves: "ttyUSB0"},
		{name: "deep path, directories re-created at once", device: "a/b/c/d/ttyUSB0",
			setup: []step{mkdir("a/b/c/d"), node("a/b/c/d/ttyUSB0")}, unplug: []step{rmAll("a")},
			replug: []step{mkdir("a/b/c/d"), node("a/b/c/d/ttyUSB0")}, resolves: "a/b/c/d/ttyUSB0"},
		{name: "deep path, directories re-created one by one", device: "a/b/c/d/ttyUSB0",
			setup: []step{mkdir("a/b/c/d"), node("a/b/c/d/ttyUSB0")}, unplug: []step{rmAll("a/b")},
			replug: []step{mkdir("a/b"), mkdir("a/b/c"), mkdir("a/b/c/d"), node("a/b/c/d/ttyUSB0")}, resolves: "a/b/c/d/ttyUSB0"},
		{name: "configured before anything exists", device: "x/y/ttyUSB0",
			replug: []step{mkdir("x/y"), node("x/y/ttyUSB0")}, resolves: "x/y/ttyUSB0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			device := filepath.Join(root, tt.device)
			for _, s := range tt.setup {
				s(t, root)
			}
			w, err := newDirWatch(func() []string { return []string{device, ""} }, false)
			if err != nil {
				t.Fatal(err)
			}
			w.follow()
			ctx, cancel := context.WithCancel(context.Background())
			var running sync.WaitGroup
			running.Go(func() { w.run(ctx) })
			defer func() { cancel(); running.Wait(); _ = w.close() }()

			for cycle := 0; cycle < 3; cycle++ {
				if len(tt.unplug) > 0 {
					for _, s := range tt.unplug {
						s(t, root)
					}
					waitSignal(t, w.vanished, "vanished")
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
