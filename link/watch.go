package link

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// dirWatch follows the directories that hold the device node. A watch on the
// node itself would die with it, so the parent directories are watched and
// events filtered by name.
type dirWatch struct {
	w        *fsnotify.Watcher
	appeared chan struct{} // a node that may be the adapter was created or made accessible
	vanished chan struct{} // the node in use was removed
	watched  map[string]bool
}

func newDirWatch() (*dirWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &dirWatch{w: w, appeared: make(chan struct{}, 1), vanished: make(chan struct{}, 1), watched: map[string]bool{}}, nil
}

// watch adds dirs not watched yet; called before each open, so a directory that
// appeared since (/dev/serial/by-id) is picked up.
func (d *dirWatch) watch(dirs []string) error {
	for _, dir := range dirs {
		if d.watched[dir] {
			continue
		}
		if err := d.w.Add(dir); err != nil {
			return err
		}
		d.watched[dir] = true
	}
	return nil
}

// run forwards relevant events until ctx is done. paths reports the configured
// and the resolved device path at the time of the event.
func (d *dirWatch) run(ctx context.Context, paths func() (configured, resolved string), usb bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			_ = err // an overflowed queue only loses wake-ups; the backoff still runs
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			configured, resolved := paths()
			switch {
			case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
				if ev.Name == configured || ev.Name == resolved {
					signal(d.vanished)
				}
			case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Chmod):
				if mayBeAdapter(ev.Name, configured, resolved, usb) {
					signal(d.appeared)
				}
			}
		}
	}
}

// mayBeAdapter: the node itself, its link target, a directory on the way to the
// configured path (by-id appearing), or any tty when the adapter is named by USB id.
func mayBeAdapter(name, configured, resolved string, usb bool) bool {
	base := filepath.Base(name)
	switch {
	case name == configured || name == resolved:
		return true
	case base == filepath.Base(configured) || base == filepath.Base(resolved):
		return true // a by-id link re-pointed or a node under another name
	case strings.HasPrefix(configured, name+string(filepath.Separator)):
		return true
	case usb && strings.HasPrefix(base, "tty"):
		return true
	}
	return false
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
