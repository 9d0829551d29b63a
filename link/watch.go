package link

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// dirWatch follows the directories on the way to the device node. A watch on
// the node itself would die with it, so directories are watched and the
// configured path is looked at after every event.
//
// It keeps no list of its own: the directories to watch are derived afresh
// from the filesystem at every event and added (fsnotify's Add is
// idempotent), and a deleted directory's watch is dropped by inotify and by
// fsnotify's WatchList. So a directory that udev deletes and re-creates, at
// any depth (/dev/serial/by-id goes with the last adapter), is watched again
// as soon as its parent reports it.
type dirWatch struct {
	w        *fsnotify.Watcher
	targets  func() []string // the paths to follow: the configured one and the node in use
	usb      bool            // the adapter is named by USB id: any new tty may be it
	appeared chan struct{}   // the configured path resolves to a node (again), or a node changed mode
	vanished chan struct{}   // something was removed or renamed on the way: the node may be gone
}

func newDirWatch(targets func() []string, usb bool) (*dirWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &dirWatch{w: w, targets: targets, usb: usb,
		appeared: make(chan struct{}, 1), vanished: make(chan struct{}, 1)}, nil
}

// run forwards relevant events until ctx is done.
func (d *dirWatch) run(ctx context.Context) {
	d.follow()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflowed queue only loses wake-ups: follow again, the backoff still runs.
			d.follow()
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			d.follow()
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				signal(d.vanished)
			}
			if d.present() || (d.usb && strings.HasPrefix(filepath.Base(ev.Name), "tty")) {
				signal(d.appeared)
			}
		}
	}
}

// follow adds a watch on every existing directory the targets run through,
// until a pass adds nothing new: a directory created after one pass derived
// the set, before its parent's watch existed, is found by the next.
func (d *dirWatch) follow() {
	for range 16 {
		added := false
		watching := d.w.WatchList()
		for _, dir := range watchDirs(d.targets()) {
			if slices.Contains(watching, dir) {
				continue
			}
			if err := d.w.Add(dir); err == nil {
				added = true
			}
		}
		if !added {
			return
		}
	}
}

// present: the first target (the configured path) resolves to an existing node.
func (d *dirWatch) present() bool {
	t := d.targets()
	if len(t) == 0 || t[0] == "" {
		return false
	}
	_, err := os.Stat(t[0])
	return err == nil
}

// watchDirs is every existing directory above each target and above what it
// resolves to, short of the filesystem root: whichever of them udev deletes,
// its parent is watched and sees it come back. (/dev/serial/by-id/x gives
// /dev, /dev/serial, /dev/serial/by-id; the node behind it adds /dev/pts.)
func watchDirs(targets []string) []string {
	var dirs []string
	add := func(path string) {
		for dir := filepath.Dir(filepath.Clean(path)); dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() && !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
	}
	for _, t := range targets {
		if t == "" {
			continue
		}
		add(t)
		if resolved, err := filepath.EvalSymlinks(t); err == nil && resolved != t {
			add(resolved)
		}
	}
	return dirs
}

func (d *dirWatch) close() error { return d.w.Close() }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wakeTimer is retry-go's Timer, cut short when the device node appears, so a
// replug is used at once whatever the backoff's position.
type wakeTimer struct {
	ctx  context.Context
	wake <-chan struct{}
}

func (t wakeTimer) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case now := <-timer.C:
			ch <- now
		case <-t.wake:
			ch <- time.Now()
		case <-t.ctx.Done(): // retry-go returns on ctx; this goroutine must not outlive it
		}
	}()
	return ch
}
