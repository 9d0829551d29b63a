package emsim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// pty is one pseudo-terminal: the simulator serves on the master; clients open
// the slave through a symlink. The simulator keeps its own slave fd so that
// master reads do not fail with EIO while no client has the port open.
type pty struct {
	master *os.File // non-blocking, so Close wakes a pending Read (a tty hang-up)
	slave  *os.File
	name   string // /dev/pts/N
}

// openPTY opens /dev/ptmx non-blocking itself rather than through creack/pty,
// whose master is blocking: closing a blocking master neither wakes the reader
// nor hangs up the slave (see PTY-MQTT-FACTS.md).
func openPTY() (*pty, error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fail := func(what string, err error) (*pty, error) {
		_ = unix.Close(mfd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock pty", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return fail("pty number", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open "+name, err)
	}
	if err := makeRaw(sfd); err != nil {
		_ = unix.Close(sfd)
		return fail("raw mode on "+name, err)
	}
	// os.NewFile sees O_NONBLOCK and registers the master with the runtime poller.
	return &pty{master: os.NewFile(uintptr(mfd), "/dev/ptmx"), slave: os.NewFile(uintptr(sfd), name), name: name}, nil
}

// close hangs up the slave side: every client fd on it gets EIO from then on.
func (p *pty) close() error {
	return errors.Join(p.master.Close(), p.slave.Close())
}

// makeRaw is cfmakeraw: no echo, no line editing, no output processing, 8 bits.
// Termios belongs to the tty, so the client sees it too before it sets its own.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// placeLink makes at a symlink to target. A missing path is created the way
// udev creates a node; an existing symlink is replaced atomically (temporary
// link, then rename), as udev re-points /dev/serial/by-id links. Anything other
// than a symlink at that path is left alone and reported.
func placeLink(target, at string) error {
	err := os.Symlink(target, at)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if fi, lerr := os.Lstat(at); lerr != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink: %w", at, fs.ErrExist)
	}
	tmp := filepath.Join(filepath.Dir(at), "."+filepath.Base(at)+".emsim")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, at); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// removeLink removes a symlink the simulator made; a missing one is fine.
func removeLink(at string) error {
	fi, err := os.Lstat(at)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("%s is not a symlink; left in place", at)
	}
	if err := os.Remove(at); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// linkTarget is how the stable path points at the device name: relative when
// both live under a common tree (../ttyUSB1, as udev writes by-id links).
func linkTarget(from, to string) string {
	rel, err := filepath.Rel(filepath.Dir(from), to)
	if err != nil {
		return to
	}
	return rel
}
