package link

import (
	"context"
	"log/slog"
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
	targets  func() []string // the paths to follow: the configured one and the node in use or last tried
	present  func() bool     // the configured path leads to a node
	log      *slog.Logger
	appeared chan struct{} // the device may be there (again), or may have become accessible
	changed  chan struct{} // something was made, removed or renamed on the way: the node in use may be gone or moved
}

// newDirWatch returns a watch already on every directory the targets run
// through, so nothing that happens after it returns goes unseen (inotify
// queues the events until run reads them).
func newDirWatch(targets func() []string, present func() bool, log *slog.Logger) (*dirWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &dirWatch{w: w, targets: targets, present: present, log: log,
		appeared: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
	d.follow()
	return d, nil
}

// run forwards relevant events until ctx is done.
func (d *dirWatch) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// An overflowed queue loses events: follow again and look.
			d.follow()
			signal(d.changed)
			signal(d.appeared)
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename | fsnotify.Chmod) {
				// A write: every request on every tty in /dev is one. Nothing
				// was made, removed or made accessible.
				continue
			}
			d.follow()
			if ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename) {
				signal(d.changed)
			}
			if ev.Has(fsnotify.Create|fsnotify.Chmod) && d.mayBeDevice(ev.Name) {
				d.log.Debug("the device may be there", "event", ev.String())
				signal(d.appeared)
			}
		}
	}
}

// mayBeDevice: name, just made or given new permissions (udev's chmod comes
// ~90 ms after the node), may be what the link waits for: the configured
// path now leads to a node, name is a target or what one resolves to, or it
// is a tty the kernel made (a USB adapter's node, before udev links it).
func (d *dirWatch) mayBeDevice(name string) bool {
	if strings.HasPrefix(filepath.Base(name), "tty") || d.present() {
		return true
	}
	for _, t := range d.targets() {
		if t == "" {
			continue
		}
		if t == name {
			return true
		}
		if resolved, err := filepath.EvalSymlinks(t); err == nil && resolved == name {
			return true
		}
	}
	return false
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
