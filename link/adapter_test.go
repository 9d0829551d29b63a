package link

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// udev makes the by-id link 57–450 ms after the kernel makes the node
// (REAL-KERNEL-FACTS.md). A link that knows which adapter its by-id path led
// to opens the adapter's new node at once, and stays on it when the link
// appears. Here udev takes a second over the link, and only the watch can
// bring the link back (the backoff waits a minute): online must come while
// the by-id link is still missing.
func TestByIDReplugOpensTheNodeBeforeTheLink(t *testing.T) {
	b := ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}
	r := newRig(t, rigOptions{layout: byIDPath, sysfs: true, cfg: Config{Backoff: b}, pace: emsim.Pace{Links: time.Second}})
	r.waitState(Online, CauseNone)
	byID := r.path
	for cycle := 1; cycle <= 2; cycle++ {
		r.unplug()
		replugged := make(chan error, 1)
		go func() { replugged <- r.sim.Replug() }() // returns once udev's link is in place
		on := r.waitState(Online, CauseNone)
		if _, err := os.Lstat(byID); err == nil {
			t.Fatalf("cycle %d: online only once udev had made %s", cycle, byID)
		}
		if node, err := filepath.EvalSymlinks(r.sim.NodePath()); err != nil || on.Device != node {
			t.Fatalf("cycle %d: online on %q, want the new node %q (%v)", cycle, on.Device, node, err)
		}
		r.mustRead()
		if err := <-replugged; err != nil {
			t.Fatal(err)
		}
		// The link now exists and leads to the node in use: nothing changes.
		r.mustRead()
		if st := r.link.Status(); st.State != Online || st.Reconnects != cycle {
			t.Fatalf("cycle %d: after udev's link %+v", cycle, st)
		}
	}
	select {
	case st := <-r.states:
		t.Fatalf("a change after the link appeared: %+v", st)
	default:
	}
}

// The node of another adapter is never opened for a by-id path: while the
// configured adapter is away, another one (same make, another serial number,
// another USB port) takes its ttyUSB0, and the link waits; the configured one
// comes back as ttyUSB1.
func TestByIDNeverOpensAnotherAdapter(t *testing.T) {
	b := ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}
	r := newRig(t, rigOptions{layout: byIDPath, sysfs: true, cfg: Config{Backoff: b}})
	r.waitState(Online, CauseNone)
	root := filepath.Dir(r.sim.NodePath())
	r.unplug()

	// The kernel gives the other adapter's port the free ttyUSB0 and makes
	// its sysfs entry before the node.
	other := emsim.New(emsim.Options{Serial: "999999X"})
	r.sys.usbSerial("ttyUSB0", fakeAdapter{usbPath: "1-2", vid: "0403", pid: "6001", serial: "B77QX9", manufacturer: "FTDI", product: "FT232R USB UART"}, "00", "0")
	before := r.lookCount()
	if err := other.StartTree(emsim.DevTree{Root: root}); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := filepath.Base(other.NodePath()); got != "ttyUSB0" {
		t.Fatalf("the other adapter is %s, want ttyUSB0", got)
	}
	// The link looks at every new tty: wait until it has looked at this one.
	for deadline := time.Now().Add(hangGuard); r.lookCount() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the link never looked at the new node")
		}
	}
	if st := r.link.Status(); st.State == Online {
		t.Fatalf("online on another adapter: %+v", st)
	}

	r.sys.usbSerial("ttyUSB1", rigAdapter, "00", "0")
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	on := r.waitState(Online, CauseNone)
	if node, _ := filepath.EvalSymlinks(r.sim.NodePath()); on.Device != node || filepath.Base(r.sim.NodePath()) != "ttyUSB1" {
		t.Fatalf("online on %q; the adapter is %s (%s)", on.Device, r.sim.NodePath(), node)
	}
	r.mustRead()
	if n := len(other.Requests()); n != 0 {
		t.Fatalf("the other adapter's meter got %d requests", n)
	}
}

// A usb:VID:PID link looks at the serial ports only when a tty is made or
// changes mode: not on every write in /dev (each request on any tty is one),
// and not to check, at each change in /dev, that its node is still there.
// It looks first where its adapter was plugged in, then at every port.
func TestUSBLooksOnlyForNewTTYs(t *testing.T) {
	b := ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}
	r := newRig(t, rigOptions{layout: nodePath, sysfs: true,
		cfg: Config{Device: fmt.Sprintf("usb:%s:%s:%s", rigAdapter.vid, rigAdapter.pid, rigAdapter.serial), Backoff: b}})
	r.waitState(Online, CauseNone)
	root := filepath.Dir(r.sim.NodePath())
	tty := filepath.Join(root, "ttyS9") // another serial port, busy
	must(t, os.WriteFile(tty, nil, 0o660))
	noise := func() {
		t.Helper()
		for i := range 20 {
			must(t, os.WriteFile(tty, []byte("x"), 0o660))
			f := filepath.Join(root, fmt.Sprintf("noise%d", i))
			must(t, os.WriteFile(f, nil, 0o600))
			must(t, os.Remove(f))
			time.Sleep(2 * time.Millisecond) // paced, so that wake-ups cannot merge
		}
	}
	here, everywhere := rigAdapter.usbPath, ""

	online := r.lookCount()
	noise()
	for range 3 {
		r.mustRead()
	}
	if got := r.looks(online); len(got) != 0 {
		t.Errorf("online: looked at %q for writes and unrelated files in %s", got, root)
	}

	r.unplug()
	// The attempt at the loss looks; with the backoff at a minute, only the
	// watch makes the next.
	for deadline := time.Now().Add(hangGuard); r.lookCount() == online; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no attempt at the loss")
		}
	}
	lost := r.lookCount()
	noise()
	// A tty changing mode may be the adapter becoming accessible: one
	// attempt. Events come in order, so once it is made the noise was seen.
	must(t, os.Chmod(tty, 0o600))
	for deadline := time.Now().Add(hangGuard); r.lookCount() < lost+2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a tty's chmod did not make the link look where the adapter was and everywhere: %q", r.looks(lost))
		}
	}
	if got, want := r.looks(lost), []string{here, everywhere}; !slices.Equal(got, want) {
		t.Errorf("unplugged: looked at %q for the noise and one chmod of a tty, want %q", got, want)
	}

	replug := r.lookCount()
	if err := r.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	r.waitState(Online, CauseNone)
	r.mustRead()
	if got, want := r.looks(replug), []string{here}; !slices.Equal(got, want) {
		t.Errorf("replug: looked at %q, want %q: found where it was", got, want)
	}
}

// A by-id replug refused for the node's mode (udev has not set the group
// yet) is retried, on udev's chmod, on the node the link has just identified:
// no second look in sysfs, which udev is writing at that moment. The open
// refuses as the kernel does for a user in group dialout: while the node
// grants its group nothing.
func TestDeniedNodeIsRetriedWithoutASecondLook(t *testing.T) {
	b := ReconnectBackoff{Min: time.Minute, Max: time.Hour, Factor: 2}
	var denied atomic.Int32
	var looksAtDenial atomic.Int64
	var r *rig
	open := func(_ context.Context, path string, s Serial) (port, error) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o060 == 0 {
			if denied.Add(1) == 1 {
				looksAtDenial.Store(int64(r.lookCount()))
			}
			return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		}
		return openRTU(path, s, sysfs{}, slog.New(slog.DiscardHandler))
	}
	r = newRig(t, rigOptions{layout: byIDPath, sysfs: true, cfg: Config{Backoff: b, open: open}, pace: emsim.Pace{Chmod: 200 * time.Millisecond, Links: time.Second}})
	r.waitState(Online, CauseNone)
	r.unplug()
	denied.Store(0)
	replugged := make(chan error, 1)
	go func() { replugged <- r.sim.Replug() }()
	on := r.waitState(Online, CauseNone)
	if denied.Load() == 0 {
		t.Fatal("the replug was never refused: the node was 0660 from the start")
	}
	if node, _ := filepath.EvalSymlinks(r.sim.NodePath()); on.Device != node {
		t.Fatalf("online on %q, want %q", on.Device, node)
	}
	if looks := int64(r.lookCount()); looks != looksAtDenial.Load() {
		t.Errorf("%d looks in sysfs after the refusal (%d attempts refused), want none", looks-looksAtDenial.Load(), denied.Load())
	}
	r.mustRead()
	if err := <-replugged; err != nil {
		t.Fatal(err)
	}
}
