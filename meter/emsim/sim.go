// Package emsim simulates Carlo Gavazzi EM300/ET300-family energy meters (EM340 first):
// Modbus RTU slaves served from meter.Registers(), on a pty or behind a TCP gateway, that
// can be unplugged and made to misbehave.
//
// A Sim is one meter, of the model its Options say. NewBus puts several on one RS485
// line, each at its own address; a lone Sim is a bus of one. ListenTCP serves a bus
// through a gateway, in RTU-over-TCP or Modbus TCP (MBAP) framing. A bus on a pty
// plugs in one of two ways:
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
// Faults (Mute, CorruptCRC, LateNext, PowerCycle, LowEnergy, …) spoil one meter's replies
// while it serves; the gateway has faults of its own (Silent, CloseMidReplyNext,
// ResetConnections, Stop, …). Each meter's Requests logs every request it heard with what
// was done to it.
package emsim

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// Options describe the simulated meter. The zero value is a factory-set EM340
// built before October 2018 (no 3-decimal totals, no production year) in
// measurement mode A, answering at once.
type Options struct {
	Address byte // RS485 slave address (2000h); 0 means 1
	// ModelCode (000Bh) is the model of the family: 341 EM340 (0 means 341),
	// 340 its engineering sample (32-bit values most significant word first),
	// 346 EM341, 345 ET340, 331 and 332 EM330, 355 EM331, 335 and 336 ET330.
	// Any other code is served as given.
	ModelCode        uint16
	Serial           string // 5000h–5006h; "" means "235411W"
	FirmwareVersion  uint16 // 0302h: 0 = "A", 1 = "B", ...
	FirmwareRevision uint16 // 0303h
	ProductionYear   uint16 // 5010h; 0 = register absent (exception 02), as on an older meter
	FineEnergy       bool   // table 2.5 present; false: 0400h–040Fh answer exception 02
	MeasurementMode  uint16 // 1103h: meter.MeasurementModeA (0) or meter.MeasurementModeB (1)
	// MeasuringSystem (1002h): 0 = 3-phase + N, 1 = 3-phase, 2 = 2-phase + N,
	// 3 = 1-phase (EM330 only: a write of 3 to another model gets exception
	// 03, but Options serve it as given). What a system does not measure reads
	// 0, whatever Set holds: in 2-phase + N the L3 values and the line-to-line
	// voltages with L3; in 1-phase the L2 and L3 values and every line-to-line
	// voltage; the phase sequence outside 3-phase. (Our assumption: the
	// protocol document does not say.)
	MeasuringSystem uint16
	CTRatio         float64 // 1003h, served as UINT32 ratio×10; 0 means 1
	VTRatio         float64 // 1005h, served as UINT32 ratio×10; 0 means 1
	WrongConnection uint16  // 1105h bit field; 0 = wiring correct
	MaxWords        uint16  // largest read (2004h); larger reads get exception 03. 0 means 50
	// Absent are addresses the meter does not have, as a model of the family
	// may lack a value: a read that includes one, and a write to one, get
	// exception 02. An address inside a value of meter.Registers() (or its
	// 3-decimal pair) takes out the whole value; one inside a 32-bit setting,
	// both its words.
	Absent    []uint16
	Static    bool    // values never move and energy does not grow: for exact-value tests
	TimeScale float64 // simulated seconds per real second (energy grows faster); 0 means 1
	Seed      uint64  // for noise and garbage replies; 0 means 1

	// WireTiming answers only after the request and the reply would have taken
	// on the line at Baud (10 bits a byte) plus Latency, measured from the
	// arrival of the request.
	WireTiming bool
	Baud       int           // 0 means 9600; also sets 2001h
	Latency    time.Duration // the meter's think time, with WireTiming

	// IgnoreWithin drops a query arriving sooner than this after the previous
	// reply on the line (from any meter on the bus), as a real meter may
	// within its 40 ms; 0 answers every query.
	IgnoreWithin time.Duration

	Logger *slog.Logger // nil discards
}

// ErrUnknownKey is returned for a key that is not in meter.Registers().
var ErrUnknownKey = errors.New("no register with this key")

// Sim is a simulated meter of the family. Its methods are safe for concurrent use.
type Sim struct {
	opts     Options
	log      *slog.Logger
	mem      *memoryMap      // immutable after New
	absent   map[uint16]bool // Options.Absent, expanded; immutable after New
	mswFirst bool

	own *Bus                // the bus of one that the plug methods act on
	on  atomic.Pointer[Bus] // the bus the meter is on: own, or the one NewBus made

	mu       sync.Mutex // guards what follows
	model    *model
	words    map[uint16]uint16 // settings and identity registers
	baud     int
	faults   faults
	requests []Request
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
	s.absent = absentSet(opts.Absent, s.mem)
	s.own = newBus([]*Sim{s})
	s.on.Store(s.own)
	s.model = newModel(s.mem.regs, opts.Static, opts.TimeScale, opts.Seed, s.conditions(), time.Now())
	for _, r := range s.mem.regs {
		if _, ok := s.model.out[r.Key]; !ok {
			s.log.Warn("register not simulated; it reads 0", "key", r.Key)
		}
	}
	return s
}

// The plug methods of a lone Sim act on its bus of one. Once the meter is on
// a bus made by NewBus, they fail (Close does nothing): plug the bus.

// Start creates the pty and a symlink to its slave side at path (which must
// not exist), and serves requests until Unplug or Close. See Bus.Start.
func (s *Sim) Start(path string) error { return s.own.Start(path) }

// StartTree plugs the adapter in, udev-style, under t.Root. See Bus.StartTree.
func (s *Sim) StartTree(t DevTree) error { return s.own.StartTree(t) }

// Close unplugs the meter for good. See Bus.Close.
func (s *Sim) Close() error { return s.own.Close() }

// Unplug is a USB adapter pulled out. See Bus.Unplug.
func (s *Sim) Unplug() error { return s.own.Unplug() }

// Replug plugs the adapter back in under the same name. See Bus.Replug.
func (s *Sim) Replug() error { return s.own.Replug() }

// ReplugAfter is a whole outage in one call. See Bus.ReplugAfter.
func (s *Sim) ReplugAfter(off time.Duration) error { return s.own.ReplugAfter(off) }

// ReplugAs plugs the adapter back in under another device name. See Bus.ReplugAs.
func (s *Sim) ReplugAs(newPath string) error { return s.own.ReplugAs(newPath) }

// Path is where the meter's bus appears when plugged in. See Bus.Path.
func (s *Sim) Path() string { return s.on.Load().Path() }

// Device is the /dev/pts/N behind the path; "" while unplugged. See Bus.Device.
func (s *Sim) Device() string { return s.on.Load().Device() }

// NodePath is Root/ttyUSB<n> currently in use. See Bus.NodePath.
func (s *Sim) NodePath() string { return s.on.Load().NodePath() }

// ByIDPath is Root/serial/by-id/<ByID>. See Bus.ByIDPath.
func (s *Sim) ByIDPath() string { return s.on.Load().ByIDPath() }

// ByPathPath is Root/serial/by-path/<ByPath>. See Bus.ByPathPath.
func (s *Sim) ByPathPath() string { return s.on.Load().ByPathPath() }

// join moves the meter from its bus of one onto b.
func (s *Sim) join(b *Bus) error {
	s.own.plugMu.Lock()
	defer s.own.plugMu.Unlock()
	if s.own.started {
		return errors.New("plugged in on its own")
	}
	if !s.on.CompareAndSwap(s.own, b) {
		return errors.New("already on a bus")
	}
	return nil
}

// Set serves value for key (a meter.Register Key, in the register's unit) and
// holds it there until Release. A held energy total stops counting; released,
// it counts on from the held value. Set wins over the measurement mode;
// the measuring system wins over Set (see Options.MeasuringSystem).
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
