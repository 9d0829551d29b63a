package emsim

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
	"golang.org/x/sys/unix"
)

// noPace keeps udev's order but takes out its pauses, for rapid cycles.
var noPace = Pace{Remove: -1, Chmod: -1, Links: -1}

// startTree starts a simulator in tree mode under a fresh root and closes it
// when the test ends.
func startTree(t *testing.T, opts Options, tr DevTree) (*Sim, string) {
	t.Helper()
	if tr.Root == "" {
		tr.Root = t.TempDir()
	}
	s := New(opts)
	if err := s.StartTree(tr); err != nil {
		t.Fatalf("start tree: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, tr.Root
}

// inotify is the kernel's directory watch, read after the fact: its events
// queue in the kernel until read.
type inotify struct {
	t     *testing.T
	fd    int
	root  string
	paths map[int32]string // watch descriptor → watched path
}

func watch(t *testing.T, root string, paths ...string) *inotify {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	w := &inotify{t: t, fd: fd, root: root, paths: map[int32]string{}}
	for _, p := range paths {
		w.add(p)
	}
	return w
}

func (w *inotify) add(path string) {
	w.t.Helper()
	mask := uint32(unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB)
	wd, err := unix.InotifyAddWatch(w.fd, path, mask)
	if err != nil {
		w.t.Fatalf("watch %s: %v", path, err)
	}
	w.paths[int32(wd)] = path
}

// events are the queued events as "OP path" with the path relative to root.
func (w *inotify) events() []string {
	w.t.Helper()
	var out []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			w.t.Fatalf("read inotify: %v", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			var op string
			switch {
			case ev.Mask&unix.IN_CREATE != 0:
				op = "CREATE"
			case ev.Mask&unix.IN_DELETE != 0:
				op = "DELETE"
			case ev.Mask&unix.IN_MOVED_FROM != 0:
				op = "MOVED_FROM"
			case ev.Mask&unix.IN_MOVED_TO != 0:
				op = "MOVED_TO"
			case ev.Mask&unix.IN_ATTRIB != 0:
				op = "ATTRIB"
			default:
				continue // IN_IGNORED and the like
			}
			rel, _ := filepath.Rel(w.root, filepath.Join(w.paths[ev.Wd], name))
			out = append(out, op+" "+rel)
		}
	}
}

func TestTreeLayout(t *testing.T) {
	s, root := startTree(t, Options{Static: true, Serial: "A10K4ZB"}, DevTree{})
	node := filepath.Join(root, "ttyUSB0")
	byID := filepath.Join(root, "serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4ZB-if00-port0")
	byPath := filepath.Join(root, "serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0")
	if s.NodePath() != node || s.ByIDPath() != byID || s.ByPathPath() != byPath || s.Path() != byID {
		t.Fatalf("paths %q %q %q %q", s.NodePath(), s.ByIDPath(), s.ByPathPath(), s.Path())
	}
	links := []struct{ at, target string }{
		{node, s.Device()},
		{byID, "../../ttyUSB0"},
		{byPath, "../../ttyUSB0"},
	}
	for _, l := range links {
		if got, err := os.Readlink(l.at); err != nil || got != l.target {
			t.Errorf("%s → %q (%v), want %q", l.at, got, err, l.target)
		}
	}
	fi, err := os.Stat(byID)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || fi.Mode()&fs.ModeCharDevice == 0 ||
		(os.Geteuid() == 0 && int(st.Gid) != dialoutGID()) {
		t.Errorf("node %v gid %d, want a 0660 character device of group %d", fi.Mode(), st.Gid, dialoutGID())
	}
	for _, dir := range []string{filepath.Dir(byID), filepath.Dir(byPath), filepath.Join(root, "serial")} {
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", dir, fi, err)
		}
	}
	for _, p := range []string{byID, byPath, node} {
		mustRead(t, dial(t, p, testTimeout), 0, 2)
	}
}

// Unplug removes the node, then udev's links and directories, in its order.
func TestTreeUnplugOrder(t *testing.T) {
	s, root := startTree(t, Options{Static: true}, DevTree{ByID: "id", ByPath: "path", Pace: noPace})
	w := watch(t, root, root, filepath.Join(root, "serial"), filepath.Join(root, "serial/by-id"), filepath.Join(root, "serial/by-path"))
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DELETE ttyUSB0",
		"DELETE serial/by-path/path", "DELETE serial/by-path",
		"DELETE serial/by-id/id", "DELETE serial/by-id",
		"DELETE serial",
	}
	if got := w.events(); !slices.Equal(got, want) {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
	if s.NodePath() != "" || s.Device() != "" {
		t.Fatalf("NodePath %q Device %q while unplugged", s.NodePath(), s.Device())
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Fatalf("left in the root: %v %v", ents, err)
	}
	if err := s.Replug(); err != nil { // from nothing: the node, then /dev/serial
		t.Fatal(err)
	}
	if got, want := w.events(), []string{"CREATE ttyUSB0", "CREATE serial"}; !slices.Equal(got, want) {
		t.Fatalf("replug events %q, want %q", got, want)
	}
}

// With another adapter present its node and links stay; ours comes up as
// ttyUSB1, and udev renames each link into place rather than creating it.
func TestTreeBesideAnotherAdapter(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"serial/by-id", "serial/by-path"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../ttyUSB0", filepath.Join(root, d, "other")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/dev/null", filepath.Join(root, "ttyUSB0")); err != nil {
		t.Fatal(err)
	}
	s, _ := startTree(t, Options{Static: true}, DevTree{Root: root, ByID: "id", ByPath: "path", Pace: noPace})
	if s.NodePath() != filepath.Join(root, "ttyUSB1") {
		t.Fatalf("node %s beside ttyUSB0", s.NodePath())
	}
	w := watch(t, root, root, filepath.Join(root, "serial"), filepath.Join(root, "serial/by-id"), filepath.Join(root, "serial/by-path"))
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.events(), []string{"DELETE ttyUSB1", "DELETE serial/by-path/path", "DELETE serial/by-id/id"}; !slices.Equal(got, want) {
		t.Fatalf("unplug events %q, want %q", got, want)
	}
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CREATE ttyUSB1",
		"CREATE serial/by-path/.#path.emsim", "MOVED_FROM serial/by-path/.#path.emsim", "MOVED_TO serial/by-path/path",
		"CREATE serial/by-id/.#id.emsim", "MOVED_FROM serial/by-id/.#id.emsim", "MOVED_TO serial/by-id/id",
	}
	if got := w.events(); !slices.Equal(got, want) {
		t.Fatalf("replug events\n%q\nwant\n%q", got, want)
	}
	if got, err := os.Readlink(s.ByIDPath()); err != nil || got != "../../ttyUSB1" {
		t.Fatalf("by-id → %q (%v)", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"ttyUSB0", "serial/by-id/other", "serial/by-path/other"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("the other adapter's %s: %v", p, err)
		}
	}
}

// While any fd of the old node is open the adapter comes back as ttyUSB1;
// ttyUSB0 returns once it is free.
func TestTreeHeldNodeComesBackAsNext(t *testing.T) {
	s, root := startTree(t, Options{Static: true}, DevTree{Pace: noPace})
	open := func() *os.File {
		t.Helper()
		f, err := os.OpenFile(s.ByIDPath(), os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	replug := func(want string) {
		t.Helper()
		if err := s.Unplug(); err != nil {
			t.Fatal(err)
		}
		if err := s.Replug(); err != nil {
			t.Fatal(err)
		}
		if s.NodePath() != filepath.Join(root, want) {
			t.Fatalf("replugged as %s, want %s", s.NodePath(), want)
		}
		if got, err := os.Readlink(s.ByIDPath()); err != nil || got != "../../"+want {
			t.Fatalf("by-id → %q (%v), want ../../%s", got, err, want)
		}
		c, err := openClient(s.ByIDPath(), testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		mustRead(t, c, 0, 2)
		_ = c.Close()
	}
	replug("ttyUSB0") // nobody holds it
	old := open()     // holds ttyUSB0
	replug("ttyUSB1")
	if _, err := os.Lstat(filepath.Join(root, "ttyUSB0")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ttyUSB0 came back while held: %v", err)
	}
	second := open() // holds ttyUSB1 while ttyUSB0 is still held
	replug("ttyUSB2")
	_ = old.Close()
	replug("ttyUSB0") // the lowest free one, while ttyUSB1 is still held
	_ = second.Close()
	replug("ttyUSB0")
}

// The node is there before udev has given it its group: a non-root process in
// group dialout gets EACCES until the chmod, then opens it; one outside the
// group never does.
func TestTreePermissionWindow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as another user needs root")
	}
	root := t.TempDir()
	for _, d := range []string{root, filepath.Dir(root)} { // searchable by the other user
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	dialout := dialoutGID()
	s, _ := startTree(t, Options{Static: true}, DevTree{Root: root, Pace: Pace{Remove: -1, Chmod: time.Second, Links: -1}})
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	replugged := make(chan error, 1)
	go func() { replugged <- s.Replug() }()
	node := filepath.Join(root, "ttyUSB0")
	if !waitFor(5*time.Second, func() bool { _, err := os.Lstat(node); return err == nil }) {
		t.Fatal("the node never appeared")
	}
	w := watch(t, root, node) // follows the link to the pty
	fi, err := os.Stat(node)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("new node %v %d:%d, want 0600 root:root", fi.Mode(), st.Uid, st.Gid)
	}
	if err := openAs(node, nobody, nobody, dialout); !errors.Is(err, unix.EACCES) {
		t.Errorf("open as a dialout member before udev's chmod: %v, want EACCES", err)
	}
	if _, err := os.Lstat(s.ByIDPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("by-id link before the chmod: %v", err)
	}
	select {
	case err := <-replugged:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("replug hangs")
	}
	if got := w.events(); !slices.Contains(got, "ATTRIB ttyUSB0") {
		t.Errorf("events on the node %q, want an ATTRIB", got)
	}
	fi, err = os.Stat(node)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Uid != 0 || int(st.Gid) != dialout {
		t.Errorf("node %v %d:%d, want 0660 root:%d", fi.Mode(), st.Uid, st.Gid, dialout)
	}
	if err := openAs(node, nobody, nobody, dialout); err != nil {
		t.Errorf("open as a dialout member after the chmod: %v", err)
	}
	if err := openAs(s.ByIDPath(), nobody, nobody, dialout); err != nil {
		t.Errorf("open of the by-id link as a dialout member: %v", err)
	}
	if err := openAs(node, nobody, nobody); !errors.Is(err, unix.EACCES) {
		t.Errorf("open outside group dialout: %v, want EACCES", err)
	}
	mustRead(t, dial(t, s.ByIDPath(), testTimeout), 0, 2)
}

// openAs opens and closes path as uid:gid with the supplementary groups, on
// an OS thread of its own: the credentials are set on that thread only, and
// the thread ends with the goroutine (locked, never unlocked), taking them
// along.
func openAs(path string, uid, gid int, groups ...int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		gids := make([]uint32, len(groups)+1)
		for i, g := range groups {
			gids[i] = uint32(g)
		}
		keep := ^uintptr(0) // -1: leave the real and saved ids
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(unsafe.Pointer(&gids[0])), 0); e != 0 {
			errc <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(gid), keep); e != 0 {
			errc <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
			errc <- e
			return
		}
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Close(fd)
		}
		errc <- err
	}()
	return <-errc
}

func TestTreeErrors(t *testing.T) {
	s, root := startTree(t, Options{Static: true}, DevTree{ByID: "id", Pace: noPace})
	if err := s.StartTree(DevTree{Root: root}); err == nil {
		t.Error("second start succeeded")
	}
	if err := s.ReplugAs(filepath.Join(root, "ttyUSB5")); err == nil {
		t.Error("ReplugAs in tree mode succeeded")
	}
	taken := New(Options{})
	if err := taken.StartTree(DevTree{Root: root, ByID: "id"}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("start on a by-id link that exists: %v", err)
	}
	if err := taken.StartTree(DevTree{Root: filepath.Join(root, "missing")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("start in a missing root: %v", err)
	}
	if err := taken.StartTree(DevTree{Root: root, ByID: "a/b"}); err == nil {
		t.Error("a by-id name with a slash was taken")
	}
	if err := taken.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Fatalf("left after Close: %v %v", ents, err)
	}
	if s.ByIDPath() == "" || s.NodePath() != "" {
		t.Fatalf("after Close: by-id %q node %q", s.ByIDPath(), s.NodePath())
	}
}

// The defaults are the measured pace, and Unplug and Replug wait for udev's
// last step: when they return, everything is in place (or gone).
func TestTreeDefaultPace(t *testing.T) {
	if got, want := (Pace{}).withDefaults(), (Pace{DefaultRemovePace, DefaultChmodPace, DefaultLinksPace}); got != want {
		t.Fatalf("defaults %+v", got)
	}
	if got := (Pace{Remove: -1, Chmod: 5}).withDefaults(); got != (Pace{-1, 5, DefaultLinksPace}) {
		t.Fatalf("partial %+v", got)
	}
	s, root := startTree(t, Options{Static: true}, DevTree{})
	for range 2 {
		if err := s.ReplugAfter(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{s.ByIDPath(), s.ByPathPath()} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("after replug: %v", err)
			}
		}
		if err := s.Unplug(); err != nil {
			t.Fatal(err)
		}
		if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
			t.Fatalf("after unplug: %v %v", ents, err)
		}
	}
}

// 200 rapid cycles, clients coming and going and sometimes holding the old
// node across a replug, leave no goroutine, no fd and no path behind.
func TestTreeNoLeaks(t *testing.T) {
	s, root := startTree(t, Options{}, DevTree{Pace: noPace})
	cycle := func(i int) {
		t.Helper()
		var held *os.File
		if i%10 == 0 {
			c, err := openClient(s.ByIDPath(), testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadRegisters(0, 50, modbus.HOLDING_REGISTER); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			_ = c.Close()
		}
		if i%7 == 0 {
			f, err := os.OpenFile(s.ByIDPath(), os.O_RDWR|syscall.O_NOCTTY, 0)
			if err != nil {
				t.Fatal(err)
			}
			held = f
		}
		if err := s.ReplugAfter(0); err != nil {
			t.Fatal(err)
		}
		if held != nil {
			_ = held.Close()
		}
	}
	for i := range 10 { // warm up
		cycle(i)
	}
	baseG, baseFD := goroutines(), openFDs(t)
	usb1 := 0
	for i := range 200 {
		cycle(i)
		if strings.HasSuffix(s.NodePath(), "ttyUSB1") {
			usb1++
		}
	}
	if usb1 == 0 {
		t.Error("never back as ttyUSB1 although the old node was held")
	}
	if !waitFor(2*time.Second, func() bool { return goroutines() <= baseG+1 }) {
		t.Errorf("goroutines: %d after, %d before", goroutines(), baseG)
	}
	if fds := openFDs(t); fds > baseFD {
		t.Errorf("open fds: %d after, %d before", fds, baseFD)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Fatalf("left after Close: %v %v", ents, err)
	}
}

// A different meter behind the adapter: after SetSerial and a replug the new
// serial number is what a master reads at 5000h.
func TestTreeDifferentMeter(t *testing.T) {
	s, _ := startTree(t, Options{Static: true}, DevTree{Pace: noPace})
	serial := func() string {
		t.Helper()
		p := openRaw(t, s.ByIDPath())
		defer p.f.Close()
		var b []byte
		for _, w := range p.readWords(meter.AddrSerialNumber, meter.SerialNumberWords) {
			if w != 0 {
				b = append(b, byte(w))
			}
		}
		return string(b)
	}
	if got := serial(); got != "235411W" {
		t.Fatalf("serial %q", got)
	}
	if err := s.Unplug(); err != nil {
		t.Fatal(err)
	}
	s.SetSerial("999999X")
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != "999999X" {
		t.Fatalf("serial after the swap %q, want 999999X", got)
	}
	if !strings.Contains(s.ByIDPath(), "235411W") { // the adapter's link stays what it was
		t.Fatalf("by-id %s", s.ByIDPath())
	}
}
