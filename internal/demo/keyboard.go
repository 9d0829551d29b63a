package demo

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Keys the demo reacts to. In raw mode Ctrl-C and Ctrl-D arrive as bytes, not
// as a signal or end of file, so they are keys here too.
const (
	keyUnplug = 'u'
	keyQuit   = 'q'
	keyCtrlC  = 0x03
	keyCtrlD  = 0x04
)

// keyboard reads single key presses from a terminal in raw mode, without
// waiting for Enter. close puts the terminal back as it was.
type keyboard struct {
	fd    int
	saved *term.State
	keys  chan byte
	stop  chan struct{}
	done  sync.WaitGroup
}

// terminalFd is f's file descriptor if f is a terminal.
func terminalFd(f any) (int, bool) {
	file, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(file.Fd())
	return fd, term.IsTerminal(fd)
}

// openKeyboard puts the terminal fd in raw mode and starts reading keys.
func openKeyboard(fd int) (*keyboard, error) {
	saved, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("keyboard: %w", err)
	}
	k := &keyboard{fd: fd, saved: saved, keys: make(chan byte, 8), stop: make(chan struct{})}
	k.done.Go(k.read)
	return k, nil
}

// read polls rather than blocks in read(2), so close can stop it: a goroutine
// blocked on a terminal cannot be woken.
func (k *keyboard) read() {
	buf := make([]byte, 16)
	for {
		select {
		case <-k.stop:
			return
		default:
		}
		fds := []unix.PollFd{{Fd: int32(k.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if errors.Is(err, unix.EINTR) || err == nil && n == 0 {
			continue
		}
		if err != nil || fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			k.send(keyCtrlD) // the terminal went away: treat it as end of input
			return
		}
		m, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil || m == 0 {
			k.send(keyCtrlD)
			return
		}
		for _, b := range buf[:m] {
			if !k.send(b) {
				return
			}
		}
	}
}

func (k *keyboard) send(b byte) bool {
	select {
	case k.keys <- b:
		return true
	case <-k.stop:
		return false
	}
}

// close stops reading and restores the terminal's mode.
func (k *keyboard) close() error {
	close(k.stop)
	k.done.Wait()
	if err := term.Restore(k.fd, k.saved); err != nil {
		return fmt.Errorf("keyboard: restore terminal: %w", err)
	}
	return nil
}
