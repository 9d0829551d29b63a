// Package emsim simulates a Carlo Gavazzi EM340 energy meter: a Modbus RTU slave on a
// pseudo-terminal, served from meter.Registers(), that can be unplugged and made to misbehave.
//
// It plugs in one of two ways:
//
//   - Tree mode (StartTree): the adapter under a directory laid out as udev lays out
//     /dev: Root/ttyUSB<n>, Root/serial/by-id/… and Root/serial/by-path/…, created and
//     removed in udev's order and at its pace, the node first 0600 and only later 0660
//     group dialout, the by-id link renamed into place, and ttyUSB1 on a replug while a
//     process still holds ttyUSB0. Any test of unplug or replug behaviour uses tree
//     mode: it is what a real machine does (REAL-KERNEL-FACTS.md), including what a
//     directory watch sees. Pace{Remove: -1, Chmod: -1, Links: -1} takes out the
//     pauses for rapid cycles, keeping the order.
//   - A single path (Start): one symlink that appears and vanishes at once; enough for
//     tests of the protocol, the values and the faults.
//
// Faults (Mute, CorruptCRC, LateNext, PowerCycle, LowEnergy, …) spoil replies while it
// serves; Requests logs each request with what was done to it.
package emsim

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// Options describe the simulated meter. The zero value is a factory-set EM340
// built before October 2018 (no 3-decimal totals, no production year) in
// measurement mode A, answering at once.
type Options struct {
	Address          byte    // RS485 slave address (2000h); 0 means 1
	ModelCode        uint16  // 000Bh; 0 means 341. 340 serves 32-bit values most significant word first
	Serial           string  // 5000h–5006h; "" means "235411W"
	FirmwareVersion  uint16  // 0302h: 0 = "A", 1 = "B", ...
	FirmwareRevision uint16  // 0303h
	ProductionYear   uint16  // 5010h; 0 = register absent (exception 02), as on an older meter
	FineEnergy       bool    // table 2.5 present; false: 0400h–040Fh answer exception 02
	MeasurementMode  uint16  // 1103h: meter.MeasurementModeA (0) or meter.MeasurementModeB (1)
	MeasuringSystem  uint16  // 1002h: 0 = 3-phase + N, 1 = 3-phase, 2 = 2-phase + N
	WrongConnection  uint16  // 1105h bit field; 0 = wiring correct
	MaxWords         uint16  // largest read (2004h); larger reads get exception 03. 0 means 50
	Static           bool    // values never move and energy does not grow: for exact-value tests
	TimeScale        float64 // simulated seconds per real second (energy grows faster); 0 means 1
	Seed             uint64  // for noise and garbage replies; 0 means 1

	// WireTiming answers only after the request and the reply would have taken
	// on the line at Baud (10 bits a byte) plus Latency, measured from the
	// arrival of the request.
	WireTiming bool
	Baud       int           // 0 means 9600; also sets 2001h
	Latency    time.Duration // the meter's think time, with WireTiming

	// IgnoreWithin drops a query arriving sooner than this after the previous
	// reply, as a real meter may within its 40 ms; 0 answers every query.
	IgnoreWithin time.Duration

	Logger *slog.Logger // nil discards
}

// ErrUnknownKey is returned for a key that is not in meter.Registers().
var ErrUnknownKey = errors.New("no register with this key")

// Sim is a simulated EM340. Its methods are safe for concurrent use.
type Sim struct {
	opts     Options
	log      *slog.Logger
	mem      *memoryMap // immutable after New
	mswFirst bool

	mu       sync.Mutex // guards what follows
	model    *model
	words    map[uint16]uint16 // settings and identity registers
	baud     int
	faults   faults
	requests []Request
	device   string // /dev/pts/N while plugged in, for Device
	node     string // Root/ttyUSB<n> while it exists (tree mode), for NodePath
	byID     string // the by-id link in tree mode, for ByIDPath
	byPath   string // the by-path link in tree mode, for ByPathPath

	plugMu  sync.Mutex // guards what follows; serialises plugging (held through udev's pauses)
	path    string     // the stable path given to Start, or the by-id link in tree mode
	devPath string     // the device name: path, or the name given to ReplugAs
	tree    *tree      // nil unless started with StartTree
	conn    *conn      // nil while unplugged
	started bool
	closed  bool
}

// New returns a simulator with the values of a meter at rest; Start plugs it in.
func New(opts Options) *Sim {
	if opts.Address == 0 {
		opts.Address = 1
	}
	if opts.ModelCode == 0 {
		opts.ModelCode = meter.ModelEM340
	}
	if opts.Serial == "" {
		opts.Serial = "235411W"
	}
	if opts.MaxWords == 0 {
		opts.MaxWords = meter.MaxReadWords
	}
	opts.MaxWords = min(opts.MaxWords, 125) // what fits in a Modbus reply
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Baud <= 0 {
		opts.Baud = 9600
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		opts: opts, log: log, mem: newMemoryMap(meter.Registers()),
		mswFirst: opts.ModelCode == meter.ModelEM340Sample,
		words:    initialWords(opts), baud: opts.Baud,
		faults: faults{sentinel: map[string]bool{}},
	}
	s.model = newModel(s.mem.regs, opts.Static, opts.TimeScale, opts.Seed, s.conditions(), time.Now())
	for _, r := range s.mem.regs {
		if _, ok := s.model.out[r.Key]; !ok {
			s.log.Warn("register not simulated; it reads 0", "key", r.Key)
		}
	}
	return s
}

// Start creates the pty and a symlink to its slave side at path (which must
// not exist), and serves requests until Unplug or Close.
func (s *Sim) Start(path string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	switch {
	case s.closed:
		return errors.New("emsim: start: simulator closed")
	case s.started:
		return errors.New("emsim: start: already started")
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("emsim: start at %s: %w", path, fs.ErrExist)
	}
	s.path, s.devPath = path, path
	if err := s.plug(); err != nil {
		return fmt.Errorf("emsim: start: %w", err)
	}
	s.started = true
	return nil
}

// Close unplugs the meter for good: the pty is closed, the serving goroutine
// has returned and the paths are removed when Close returns.
func (s *Sim) Close() error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.unplugAny(Pace{Remove: -1, Chmod: -1, Links: -1}); err != nil {
		return fmt.Errorf("emsim: close: %w", err)
	}
	return nil
}

// Unplug is a USB adapter pulled out: the master is closed (a tty hang-up:
// the client's fd gets EIO from then on and never recovers) and the path
// vanishes. In tree mode the paths vanish in udev's order and pace (see
// StartTree) and Unplug returns after the last removal. Unplugging an
// unplugged meter does nothing.
func (s *Sim) Unplug() error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	if err := s.unplugAny(s.pace()); err != nil {
		return fmt.Errorf("emsim: unplug: %w", err)
	}
	return nil
}

// Replug plugs the adapter back in under the same name: a new pty (its
// /dev/pts number may differ) and the path again. A plugged meter is
// unplugged first. Values and energy carry on as on the real meter. In tree
// mode the kernel's name is the lowest free ttyUSB<n> (ttyUSB1 while a
// process still holds the old ttyUSB0), udev's steps follow in their order
// and pace, and Replug returns after the by-id link is renamed into place.
func (s *Sim) Replug() error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	if err := s.replug(s.devPath); err != nil {
		return fmt.Errorf("emsim: replug: %w", err)
	}
	return nil
}

// ReplugAfter is a whole outage in one call: Unplug, off of nothing, then
// Replug, with no other plugging in between. For rapid cycles (off may be 0);
// in tree mode an off shorter than the client takes to close its old fd
// brings the adapter back as ttyUSB1.
func (s *Sim) ReplugAfter(off time.Duration) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	if !s.closed && s.started {
		if err := s.unplugAny(s.pace()); err != nil {
			return fmt.Errorf("emsim: replug after %v: %w", off, err)
		}
		if off > 0 {
			time.Sleep(off)
		}
	}
	if err := s.replug(s.devPath); err != nil {
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
func (s *Sim) ReplugAs(newPath string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	if s.tree != nil {
		return fmt.Errorf("emsim: replug as %s: the kernel names the node in tree mode", newPath)
	}
	if err := s.replug(newPath); err != nil {
		return fmt.Errorf("emsim: replug as %s: %w", newPath, err)
	}
	return nil
}

// Path is where the meter appears when plugged in: the path given to Start,
// or ByIDPath in tree mode.
func (s *Sim) Path() string {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	return s.path
}

// Device is the /dev/pts/N behind the path; "" while unplugged.
// It does not wait for a plug or unplug under way.
func (s *Sim) Device() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.device
}

func (s *Sim) replug(devPath string) error {
	switch {
	case s.closed:
		return errors.New("simulator closed")
	case !s.started:
		return errors.New("not started")
	}
	if s.tree != nil {
		if err := s.unplugTree(s.pace()); err != nil {
			return err
		}
		return s.plugTree(s.pace())
	}
	if err := s.unplug(); err != nil {
		return err
	}
	s.devPath = devPath
	return s.plug()
}

// unplugAny unplugs in either mode; plugMu is held.
func (s *Sim) unplugAny(pace Pace) error {
	if s.tree != nil {
		return s.unplugTree(pace)
	}
	return s.unplug()
}

// pace is udev's pace in tree mode; plugMu is held.
func (s *Sim) pace() Pace {
	if s.tree == nil {
		return Pace{}
	}
	return s.tree.Pace
}

// connect starts serving on a new pty and publishes it; plugMu is held.
func (s *Sim) connect(p *pty, node string) {
	c := &conn{pty: p, done: make(chan struct{}), exited: make(chan struct{})}
	s.conn = c
	s.mu.Lock()
	s.device, s.node = p.name, node
	s.mu.Unlock()
	go s.serve(c)
}

// hangUp closes the pty (the hang-up), waits for the serving goroutine and
// closes the simulator's own slave fd; plugMu is held.
func (s *Sim) hangUp(c *conn) error {
	s.conn = nil
	s.mu.Lock()
	s.device = ""
	s.mu.Unlock()
	close(c.done)
	err := c.pty.master.Close() // the hang-up; wakes the serving goroutine
	<-c.exited
	return errors.Join(err, c.pty.slave.Close())
}

// plug opens a pty, links the device name (and the stable path) to it and
// starts serving. plugMu is held.
func (s *Sim) plug() error {
	p, err := openPTY()
	if err != nil {
		return err
	}
	if err := placeLink(p.name, s.devPath); err != nil {
		return errors.Join(fmt.Errorf("link %s: %w", s.devPath, err), p.close())
	}
	if s.devPath != s.path {
		if err := placeLink(linkTarget(s.path, s.devPath), s.path); err != nil {
			return errors.Join(fmt.Errorf("link %s: %w", s.path, err), removeLink(s.devPath), p.close())
		}
	}
	s.connect(p, "")
	s.log.Info("meter plugged in", "path", s.path, "device", s.devPath, "pty", p.name)
	return nil
}

// unplug hangs up the pty, waits for the serving goroutine and removes the
// links. plugMu is held.
func (s *Sim) unplug() error {
	c := s.conn
	if c == nil {
		return nil
	}
	err := errors.Join(s.hangUp(c), removeLink(s.devPath))
	if s.devPath != s.path {
		err = errors.Join(err, removeLink(s.path))
	}
	s.log.Info("meter unplugged", "path", s.path, "device", s.devPath, "pty", c.pty.name)
	return err
}

// Set serves value for key (a meter.Register Key, in the register's unit) and
// holds it there until Release. A held energy total stops counting; released,
// it counts on from the held value. Set wins over the measurement mode.
func (s *Sim) Set(key string, value float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mem.index[key]; !ok {
		return fmt.Errorf("emsim: set: %w: %q", ErrUnknownKey, key)
	}
	s.model.set(key, value)
	return nil
}

// Release lets a value set with Set move again.
func (s *Sim) Release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.model.release(key)
}

// Value is what a read of key's register at its Addr decodes to now
// (raw / Divisor), before faults (sentinel, glitch) are applied. NaN for a key
// not in the table. Values move between calls unless Options.Static.
func (s *Sim) Value(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.mem.index[key]
	if !ok {
		return math.NaN()
	}
	r := s.mem.regs[i]
	s.model.refresh(time.Now(), s.conditions())
	return float64(s.raw(r, cellValue)) / r.Divisor
}

// FineValue is what the 3-decimal pair of an energy total decodes to now
// (whole + thousandths/1000); NaN for a key without one.
func (s *Sim) FineValue(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.mem.index[key]
	if !ok || s.mem.regs[i].FineAddr == 0 {
		return math.NaN()
	}
	r := s.mem.regs[i]
	s.model.refresh(time.Now(), s.conditions())
	return float64(s.raw(r, cellFineWhole)) + float64(s.raw(r, cellFineMilli))/1000
}

// SetWord changes a settings or identity register as the meter serves it,
// bypassing the write rules of function 06: e.g. the wrong-connection status
// 1105h, the measurement mode 1103h, or a serial number word. Writing 1 to
// 4000h/4001h runs the reset. It fails for an address that is not such a
// register.
func (s *Sim) SetWord(addr, value uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.words[addr]; !ok && addr != addrResetPartial && addr != addrResetTotals {
		return fmt.Errorf("emsim: set word %04Xh: not a settings or identity register", addr)
	}
	s.setWord(addr, value)
	return nil
}

// SetSerial changes the serial number the meter reports (5000h–5006h), as if
// a different meter were connected.
func (s *Sim) SetSerial(serial string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	putSerial(s.words, serial)
}
