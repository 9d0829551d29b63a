package emsim

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Bus is an RS485 line with one or more simulated meters on it, behind one
// USB adapter (a pty) or one TCP gateway (ListenTCP). Every frame on the line
// reaches every meter; only the addressed one answers, the others stay
// silent, and each meter keeps its own faults and request log. Unplugging the
// adapter takes every meter down and Replug brings them all back. A lone Sim
// is a bus of one. Its methods are safe for concurrent use.
type Bus struct {
	sims []*Sim // in the order given to NewBus
	log  *slog.Logger

	mu     sync.Mutex // guards what follows
	device string     // /dev/pts/N while plugged in, for Device
	node   string     // Root/ttyUSB<n> while it exists (tree mode), for NodePath
	byID   string     // the by-id link in tree mode, for ByIDPath
	byPath string     // the by-path link in tree mode, for ByPathPath

	plugMu  sync.Mutex // guards what follows; serialises plugging (held through udev's pauses)
	path    string     // the stable path given to Start, or the by-id link in tree mode
	devPath string     // the device name: path, or the name given to ReplugAs
	tree    *tree      // nil unless started with StartTree
	conn    *conn      // nil while unplugged
	gateway *Gateway   // non-nil while a gateway serves the bus
	started bool
	closed  bool
}

// NewBus puts the meters on one line. Their RS485 addresses (2000h) must
// differ, and none may be plugged in on its own or be on another bus: from
// now on the bus plugs them, and their own Start, Unplug, Replug… fail (their
// Close does nothing; Path, Device and the like report the bus's).
func NewBus(sims ...*Sim) (*Bus, error) {
	if len(sims) == 0 {
		return nil, errors.New("emsim: new bus: no meters")
	}
	b := newBus(sims)
	at := map[uint16]int{}
	for i, s := range sims {
		s.mu.Lock()
		addr := s.words[addrSlaveAddress]
		s.mu.Unlock()
		if j, ok := at[addr]; ok {
			return nil, fmt.Errorf("emsim: new bus: meters %d and %d both at address %d", j, i, addr)
		}
		at[addr] = i
	}
	var joined []*Sim
	for i, s := range sims {
		if err := s.join(b); err != nil {
			for _, j := range joined {
				j.on.Store(j.own)
			}
			return nil, fmt.Errorf("emsim: new bus: meter %d: %w", i, err)
		}
		joined = append(joined, s)
	}
	return b, nil
}

func newBus(sims []*Sim) *Bus {
	return &Bus{sims: sims, log: sims[0].log}
}

// usable fails for the bus of a lone Sim that is now on another bus, and
// while a gateway serves the bus; plugMu is held.
func (b *Bus) usable() error {
	for _, s := range b.sims {
		if s.on.Load() != b {
			return errors.New("the meter is on a bus: plug the bus")
		}
	}
	if b.gateway != nil {
		return errors.New("a gateway serves the bus")
	}
	return nil
}

// Start creates the pty and a symlink to its slave side at path (which must
// not exist), and serves requests until Unplug or Close.
func (b *Bus) Start(path string) error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if err := b.startable(); err != nil {
		return fmt.Errorf("emsim: start: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("emsim: start at %s: %w", path, fs.ErrExist)
	}
	b.path, b.devPath = path, path
	if err := b.plug(); err != nil {
		return fmt.Errorf("emsim: start: %w", err)
	}
	b.started = true
	return nil
}

// startable is the check before a first plug; plugMu is held.
func (b *Bus) startable() error {
	switch {
	case b.closed:
		return errors.New("simulator closed")
	case b.started:
		return errors.New("already started")
	}
	return b.usable()
}

// Close unplugs the bus for good: the pty is closed, the serving goroutines
// have returned and the paths are removed when Close returns. It does not
// stop a gateway serving the bus: Gateway.Close does.
func (b *Bus) Close() error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if err := b.unplugAny(Pace{Remove: -1, Chmod: -1, Links: -1}); err != nil {
		return fmt.Errorf("emsim: close: %w", err)
	}
	return nil
}

// Unplug is a USB adapter pulled out: the master is closed (a tty hang-up:
// the client's fd gets EIO from then on and never recovers) and the path
// vanishes. In tree mode the paths vanish in udev's order and pace (see
// StartTree) and Unplug returns after the last removal. Unplugging an
// unplugged bus does nothing.
func (b *Bus) Unplug() error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if err := b.usable(); err != nil {
		return fmt.Errorf("emsim: unplug: %w", err)
	}
	if err := b.unplugAny(b.pace()); err != nil {
		return fmt.Errorf("emsim: unplug: %w", err)
	}
	return nil
}

// Replug plugs the adapter back in under the same name: a new pty (its
// /dev/pts number may differ) and the path again. A plugged bus is unplugged
// first. Values and energy carry on as on the real meters. In tree mode the
// kernel's name is the lowest free ttyUSB<n> (ttyUSB1 while a process still
// holds the old ttyUSB0), udev's steps follow in their order and pace, and
// Replug returns after the by-id link is renamed into place.
func (b *Bus) Replug() error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if err := b.replug(b.devPath); err != nil {
		return fmt.Errorf("emsim: replug: %w", err)
	}
	return nil
}

// ReplugAfter is a whole outage in one call: Unplug, off of nothing, then
// Replug, with no other plugging in between. For rapid cycles (off may be 0);
// in tree mode an off shorter than the client takes to close its old fd
// brings the adapter back as ttyUSB1.
func (b *Bus) ReplugAfter(off time.Duration) error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if b.usable() == nil && !b.closed && b.started {
		if err := b.unplugAny(b.pace()); err != nil {
			return fmt.Errorf("emsim: replug after %v: %w", off, err)
		}
		if off > 0 {
			time.Sleep(off)
		}
	}
	if err := b.replug(b.devPath); err != nil {
		return fmt.Errorf("emsim: replug after %v: %w", off, err)
	}
	return nil
}

// ReplugAs plugs the adapter back in under another device name, as the
// kernel does when ttyUSB0 is still held (ttyUSB1). The path given to Start
// becomes a stable symlink to it, like /dev/serial/by-id/usb-FTDI…→../../ttyUSB1.
// Later unplugs remove both; Replug comes back under newPath.
//
// In tree mode the kernel picks the name: ReplugAs fails there.
func (b *Bus) ReplugAs(newPath string) error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if b.tree != nil {
		return fmt.Errorf("emsim: replug as %s: the kernel names the node in tree mode", newPath)
	}
	if err := b.replug(newPath); err != nil {
		return fmt.Errorf("emsim: replug as %s: %w", newPath, err)
	}
	return nil
}

// Path is where the bus appears when plugged in: the path given to Start,
// or ByIDPath in tree mode.
func (b *Bus) Path() string {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	return b.path
}

// Device is the /dev/pts/N behind the path; "" while unplugged.
// It does not wait for a plug or unplug under way.
func (b *Bus) Device() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.device
}

func (b *Bus) replug(devPath string) error {
	if err := b.usable(); err != nil {
		return err
	}
	switch {
	case b.closed:
		return errors.New("simulator closed")
	case !b.started:
		return errors.New("not started")
	}
	if b.tree != nil {
		if err := b.unplugTree(b.pace()); err != nil {
			return err
		}
		return b.plugTree(b.pace())
	}
	if err := b.unplug(); err != nil {
		return err
	}
	b.devPath = devPath
	return b.plug()
}

// unplugAny unplugs in either mode; plugMu is held.
func (b *Bus) unplugAny(pace Pace) error {
	if b.tree != nil {
		return b.unplugTree(pace)
	}
	return b.unplug()
}

// pace is udev's pace in tree mode; plugMu is held.
func (b *Bus) pace() Pace {
	if b.tree == nil {
		return Pace{}
	}
	return b.tree.Pace
}

// connect starts serving on a new pty and publishes it; plugMu is held.
func (b *Bus) connect(p *pty, node string) {
	c := &conn{pty: p, exited: make(chan struct{})}
	c.line = newLine(b.sims, c.write)
	b.conn = c
	b.mu.Lock()
	b.device, b.node = p.name, node
	b.mu.Unlock()
	go b.serve(c)
}

// hangUp stops the line (replies still pending are never sent), closes the
// pty (the hang-up; it wakes the reading goroutine), waits for it and closes
// the simulator's own slave fd; plugMu is held.
func (b *Bus) hangUp(c *conn) error {
	b.conn = nil
	b.mu.Lock()
	b.device = ""
	b.mu.Unlock()
	c.line.end()
	err := c.pty.master.Close()
	<-c.exited
	return errors.Join(err, c.pty.slave.Close())
}

// plug opens a pty, links the device name (and the stable path) to it and
// starts serving. plugMu is held.
func (b *Bus) plug() error {
	p, err := openPTY()
	if err != nil {
		return err
	}
	if err := placeLink(p.name, b.devPath); err != nil {
		return errors.Join(fmt.Errorf("link %s: %w", b.devPath, err), p.close())
	}
	if b.devPath != b.path {
		if err := placeLink(linkTarget(b.path, b.devPath), b.path); err != nil {
			return errors.Join(fmt.Errorf("link %s: %w", b.path, err), removeLink(b.devPath), p.close())
		}
	}
	b.connect(p, "")
	b.log.Info("meter plugged in", "path", b.path, "device", b.devPath, "pty", p.name)
	return nil
}

// unplug hangs up the pty, waits for the serving goroutines and removes the
// links. plugMu is held.
func (b *Bus) unplug() error {
	c := b.conn
	if c == nil {
		return nil
	}
	err := errors.Join(b.hangUp(c), removeLink(b.devPath))
	if b.devPath != b.path {
		err = errors.Join(err, removeLink(b.path))
	}
	b.log.Info("meter unplugged", "path", b.path, "device", b.devPath, "pty", c.pty.name)
	return err
}

// attach hands the bus to a gateway, which serves it until detach.
func (b *Bus) attach(g *Gateway) error {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if err := b.startable(); err != nil {
		return err
	}
	b.gateway = g
	return nil
}

func (b *Bus) detach() {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	b.gateway = nil
}
