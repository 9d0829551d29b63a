package emsim

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DevTree lays a simulated adapter out under Root the way udev lays out /dev.
type DevTree struct {
	Root   string // directory standing in for /dev (tests use t.TempDir())
	ByID   string // by-id link name; "" means "usb-FTDI_FT232R_USB_UART_<Serial of the (first) meter's Options>-if00-port0"
	ByPath string // by-path link name; "" means "pci-0000:00:14.0-usb-0:1:1.0-port0"
	Pace   Pace   // the delays between udev's steps; zero value = the measured defaults
}

// Pace is how long udev takes between its steps, measured on a real kernel
// (REAL-KERNEL-FACTS.md) and scaled down. A zero field means its default; a
// negative one means no pause at all (rapid cycles).
type Pace struct {
	// Remove is from the hang-up to the removal of the node (default 20 ms;
	// measured 0–44 ms).
	Remove time.Duration
	// Chmod is from the node's creation as 0600 root:root to udev making it
	// 0660 group dialout (default 90 ms; measured ~90 ms).
	Chmod time.Duration
	// Links is from the node's removal to the removal of the links and
	// directories at unplug, and from the chmod to their creation at plug
	// (default 60 ms; measured 50–90 ms after the disconnect, 57–160 ms
	// after the node).
	Links time.Duration
}

// The defaults of Pace.
const (
	DefaultRemovePace = 20 * time.Millisecond
	DefaultChmodPace  = 90 * time.Millisecond
	DefaultLinksPace  = 60 * time.Millisecond
)

func (p Pace) withDefaults() Pace {
	def := func(d, v time.Duration) time.Duration {
		if d == 0 {
			return v
		}
		return d
	}
	return Pace{Remove: def(p.Remove, DefaultRemovePace), Chmod: def(p.Chmod, DefaultChmodPace), Links: def(p.Links, DefaultLinksPace)}
}

func pause(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}

const (
	nodeModeNew     fs.FileMode = 0o600 // as devtmpfs creates it, root:root
	nodeModeUdev    fs.FileMode = 0o660 // after udev's rule, group dialout
	dialoutFallback             = 20    // Debian's dialout gid
	linkDirMode     fs.FileMode = 0o755
	nodePrefix                  = "ttyUSB"
)

// tree is the udev side of a simulator started with StartTree. The fields
// are used with Bus.plugMu held.
type tree struct {
	DevTree          // defaults filled in
	dialout  int     // gid udev gives the node
	n        int     // number of the node in use; -1 while unplugged
	released []fdPTY // ptys of earlier plugs that some process may still hold
}

// fdPTY is an earlier, hung-up pty and the node number it had.
type fdPTY struct {
	n    int
	pts  string // the /dev/pts/M it was
	rdev uint64
}

func (t *tree) node(n int) string { return filepath.Join(t.Root, nodePrefix+strconv.Itoa(n)) }
func (t *tree) serialDir() string { return filepath.Join(t.Root, "serial") }
func (t *tree) byIDDir() string   { return filepath.Join(t.serialDir(), "by-id") }
func (t *tree) byPathDir() string { return filepath.Join(t.serialDir(), "by-path") }
func (t *tree) byID() string      { return filepath.Join(t.byIDDir(), t.ByID) }
func (t *tree) byPath() string    { return filepath.Join(t.byPathDir(), t.ByPath) }

// StartTree plugs the adapter in, udev-style, under t.Root: Root/ttyUSB<n> (a
// symlink to the pty slave), Root/serial/by-id/<ByID> -> ../../ttyUSB<n>,
// Root/serial/by-path/<ByPath> -> ../../ttyUSB<n>, in the order and at the
// pace of Replug, and serves requests until Unplug or Close.
//
// The steps, as udev takes them on a real machine, with the pauses of Pace:
//
//	plug:   Root/ttyUSB<n> appears, its pty 0600 root:root (serving at once)
//	        · Chmod · the pty becomes 0660 group dialout (IN_ATTRIB on the pty)
//	        · Links · serial/, serial/by-path/ and its link, serial/by-id/ and
//	        its link, each link made under a temporary name and renamed into
//	        place (IN_MOVED_TO, not IN_CREATE)
//	unplug: the hang-up · Remove · Root/ttyUSB<n> is removed · Links · the
//	        by-path link, by-path/, the by-id link, by-id/ and serial/, each
//	        directory only when empty (no other adapter left)
//
// The node number is the lowest n whose earlier pty no process still holds
// and whose Root/ttyUSB<n> does not exist. A process that is not root sees
// the permissions: in group dialout it gets EACCES until the chmod (Root
// itself must then be searchable by it; t.TempDir() is 0700).
func (b *Bus) StartTree(t DevTree) error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if err := b.startable(); err != nil {
		return fmt.Errorf("emsim: start tree: %w", err)
	}
	if fi, err := os.Stat(t.Root); err != nil {
		return fmt.Errorf("emsim: start tree: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("emsim: start tree: %s is not a directory", t.Root)
	}
	if t.ByID == "" {
		t.ByID = "usb-FTDI_FT232R_USB_UART_" + b.sims[0].opts.Serial + "-if00-port0"
	}
	if t.ByPath == "" {
		t.ByPath = "pci-0000:00:14.0-usb-0:1:1.0-port0"
	}
	for _, name := range []string{t.ByID, t.ByPath} {
		if strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return fmt.Errorf("emsim: start tree: link name %q is not a file name", name)
		}
	}
	t.Pace = t.Pace.withDefaults()
	tr := &tree{DevTree: t, dialout: dialoutGID(), n: -1}
	for _, p := range []string{tr.byID(), tr.byPath()} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("emsim: start tree at %s: %w", p, fs.ErrExist)
		}
	}
	b.tree, b.path = tr, tr.byID()
	b.mu.Lock()
	b.byID, b.byPath = tr.byID(), tr.byPath()
	b.mu.Unlock()
	if err := b.plugTree(t.Pace); err != nil {
		b.tree, b.path = nil, ""
		b.mu.Lock()
		b.byID, b.byPath = "", ""
		b.mu.Unlock()
		return fmt.Errorf("emsim: start tree: %w", err)
	}
	b.started = true
	return nil
}

// NodePath is Root/ttyUSB<n> currently in use: set from the moment the node
// appears until it is removed, "" otherwise and outside tree mode. It does
// not wait for a plug or unplug under way.
func (b *Bus) NodePath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.node
}

// ByIDPath is Root/serial/by-id/<ByID>: stable across replugs, it exists
// only while plugged in. "" outside tree mode.
// It does not wait for a plug or unplug under way.
func (b *Bus) ByIDPath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byID
}

// ByPathPath is Root/serial/by-path/<ByPath>, like ByIDPath.
func (b *Bus) ByPathPath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byPath
}

// plugTree is the kernel and udev adding the adapter; plugMu is held. On a
// failure what was made is removed again.
func (b *Bus) plugTree(pace Pace) (err error) {
	t := b.tree
	n := b.freeNumber()
	p, err := openPTY()
	if err != nil {
		return err
	}
	// devtmpfs creates the node root-owned (for a non-root simulator: its own).
	if err := p.slave.Chown(os.Getuid(), os.Getgid()); err != nil {
		b.log.Warn("node owner not set", "pty", p.name, "err", err)
	}
	var rdev uint64
	if err := p.slave.Chmod(nodeModeNew); err != nil {
		return errors.Join(fmt.Errorf("chmod %s: %w", p.name, err), p.close())
	}
	if fi, err := p.slave.Stat(); err != nil {
		return errors.Join(fmt.Errorf("stat %s: %w", p.name, err), p.close())
	} else if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		rdev = st.Rdev
	}
	node := t.node(n)
	if err := os.Symlink(p.name, node); err != nil {
		return errors.Join(fmt.Errorf("node: %w", err), p.close())
	}
	t.n = n
	b.connect(p, node)
	b.conn.rdev = rdev
	b.log.Info("meter plugged in", "node", node, "pty", p.name)
	defer func() {
		if err != nil {
			err = errors.Join(err, b.unplugTree(Pace{Remove: -1, Links: -1}))
		}
	}()

	pause(pace.Chmod)
	if err := p.slave.Chown(-1, t.dialout); err != nil { // needs root or membership of the group
		b.log.Warn("node group not set", "pty", p.name, "gid", t.dialout, "err", err)
	}
	if err := p.slave.Chmod(nodeModeUdev); err != nil {
		return fmt.Errorf("chmod %s: %w", p.name, err)
	}

	pause(pace.Links)
	target := filepath.Join("..", "..", nodePrefix+strconv.Itoa(n))
	for _, l := range [][2]string{{t.byPathDir(), t.byPath()}, {t.byIDDir(), t.byID()}} {
		if err := os.MkdirAll(l[0], linkDirMode); err != nil {
			return err
		}
		if err := renameLink(target, l[1]); err != nil {
			return fmt.Errorf("link %s: %w", l[1], err)
		}
	}
	return nil
}

// unplugTree is the kernel and udev removing the adapter; plugMu is held.
func (b *Bus) unplugTree(pace Pace) error {
	t := b.tree
	c := b.conn
	if c == nil {
		return nil
	}
	err := b.hangUp(c)
	t.released = append(t.released, fdPTY{n: t.n, pts: c.pty.name, rdev: c.rdev})
	node := t.node(t.n)
	t.n = -1

	pause(pace.Remove)
	err = errors.Join(err, removeLink(node))
	b.mu.Lock()
	b.node = ""
	b.mu.Unlock()

	pause(pace.Links)
	err = errors.Join(err,
		removeLink(t.byPath()), removeEmptyDir(t.byPathDir()),
		removeLink(t.byID()), removeEmptyDir(t.byIDDir()),
		removeEmptyDir(t.serialDir()))
	b.log.Info("meter unplugged", "node", node, "pty", c.pty.name)
	return err
}

// freeNumber is the number the kernel gives the adapter: the lowest whose
// earlier pty no process still holds and whose node does not exist (another
// adapter's). plugMu is held.
func (b *Bus) freeNumber() int {
	t := b.tree
	if len(t.released) > 0 {
		held, err := stillHeld(t.released)
		if err != nil {
			b.log.Warn("cannot tell whether an old node is still held; taking it as free", "err", err)
		}
		t.released = held
	}
	for n := 0; ; n++ {
		if slices.ContainsFunc(t.released, func(o fdPTY) bool { return o.n == n }) {
			continue
		}
		if _, err := os.Lstat(t.node(n)); err == nil {
			continue
		}
		return n
	}
}

// stillHeld returns the ptys some process still has open. Once its master is
// closed a pty's /dev/pts/M is gone at once, even while a slave fd is open
// (measured: the node does not outlive the master), but the number M stays
// taken until the last fd closes, and /proc/PID/fd shows such an fd as
// "/dev/pts/M (deleted)" with the pty's device number. Processes whose fds
// cannot be read (other users, when not root) are not seen.
func stillHeld(ptys []fdPTY) ([]fdPTY, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := map[string]uint64{}
	for _, p := range ptys {
		want[p.pts+" (deleted)"] = p.rdev
	}
	open := map[uint64]bool{}
	for _, proc := range procs {
		if _, err := strconv.Atoi(proc.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", proc.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			at := filepath.Join(dir, fd.Name())
			target, err := os.Readlink(at)
			if err != nil {
				continue
			}
			rdev, ok := want[target]
			if !ok {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(at, &st) == nil && st.Rdev == rdev {
				open[rdev] = true
			}
		}
	}
	var held []fdPTY
	for _, p := range ptys {
		if open[p.rdev] {
			held = append(held, p)
		}
	}
	return held, nil
}

// renameLink makes at a symlink to target the way udev does: under a
// temporary name in the same directory, then renamed into place, so a
// watcher sees IN_MOVED_TO for at, never IN_CREATE.
func renameLink(target, at string) error {
	if fi, err := os.Lstat(at); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink: %w", at, fs.ErrExist)
	}
	tmp := filepath.Join(filepath.Dir(at), ".#"+filepath.Base(at)+".emsim")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, at); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

// removeEmptyDir removes a directory udev made, unless another adapter's
// links are still in it; a missing one is fine.
func removeEmptyDir(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return nil
	}
	return err
}

// dialoutGID is the gid of group dialout from /etc/group, 20 (Debian's)
// when there is none.
func dialoutGID() int {
	f, err := os.Open("/etc/group")
	if err != nil {
		return dialoutFallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == "dialout" {
			if gid, err := strconv.Atoi(fields[2]); err == nil {
				return gid
			}
		}
	}
	return dialoutFallback
}
