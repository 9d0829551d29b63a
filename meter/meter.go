package meter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/simonvetter/modbus"
)

// Reader reads holding registers from one meter. The link implements it; it
// serialises requests and keeps the meter's inter-frame gap.
type Reader interface {
	ReadRegisters(ctx context.Context, addr, quantity uint16) ([]uint16, error)
}

// ErrWrongMeter is returned by Connect when a different meter answers than before.
var ErrWrongMeter = errors.New("a different meter answers")

// Options tune a Meter; the zero value is usable.
type Options struct {
	Registers  []Register   // what to poll; the whole table when nil
	ResetAfter int          // snapshots a lower total must persist to count as a reset
	Logger     *slog.Logger // rejections are logged here with their raw registers
}

// Meter reads and validates snapshots of one EM340. It keeps what it learnt at
// connect (identity, block plan) and the energy totals it accepted.
type Meter struct {
	regs      []Register
	validator *Validator
	log       *slog.Logger

	id        Identity
	connected bool
	plan      []Block
	rejected  atomic.Uint64
}

// New returns a Meter; call Connect before Read.
func New(opts Options) *Meter {
	regs := opts.Registers
	if regs == nil {
		regs = Registers()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Meter{regs: regs, validator: NewValidator(opts.ResetAfter), log: log}
}

// Registers is what this meter polls.
func (m *Meter) Registers() []Register { return m.regs }

// Identity is what the meter said at the last Connect.
func (m *Meter) Identity() Identity { return m.id }

// Plan is the block plan in use.
func (m *Meter) Plan() []Block { return m.plan }

// Rejected counts values that failed validation since New.
func (m *Meter) Rejected() uint64 { return m.rejected.Load() }

// Connect reads the meter's identity and decides, afresh at every (re)connect,
// the block size and whether the 3-decimal totals exist. If the serial number
// differs from the previous Connect it returns the new identity with
// ErrWrongMeter, and forgets the old meter's totals.
func (m *Meter) Connect(ctx context.Context, r Reader) (Identity, error) {
	id, err := ReadIdentity(ctx, r)
	if err != nil {
		return id, err
	}
	plan, err := Plan(m.regs, id.FineEnergy, id.MaxWords)
	if err != nil {
		return id, err
	}
	var wrong error
	if m.connected && id.Serial != m.id.Serial {
		wrong = fmt.Errorf("serial %q, expected %q: %w", id.Serial, m.id.Serial, ErrWrongMeter)
		m.validator.Forget()
	}
	m.id, m.plan, m.connected = id, plan, true
	return id, wrong
}

// Read takes one snapshot: the planned block reads, decoding and validation.
// A value that fails validation is logged with its raw registers, counted and
// left out of the Reading. An error means no part of the snapshot is usable.
func (m *Meter) Read(ctx context.Context, r Reader) (Reading, error) {
	if !m.connected {
		return Reading{}, errors.New("meter: Read before Connect")
	}
	img, err := m.readBlocks(ctx, r)
	if err != nil {
		return Reading{}, err
	}
	at := time.Now()
	if img.allZero() {
		m.rejected.Add(1)
		m.log.Warn("snapshot rejected", "reason", ErrAllZero)
		return Reading{}, ErrAllZero
	}
	reading := Reading{Time: at, Fine: m.id.FineEnergy, Values: make([]Value, 0, len(m.regs))}
	for _, reg := range m.regs {
		words, value, err := m.decode(img, reg)
		if err == nil {
			err = m.validator.Check(reg, value, m.id.MeasurementMode, at)
		}
		if err != nil {
			m.rejected.Add(1)
			m.log.Warn("value rejected", "key", reg.Key, "raw", hexWords(words), "reason", err)
			continue
		}
		reading.Values = append(reading.Values, Value{Register: reg, Value: value})
	}
	return reading, nil
}

func (m *Meter) decode(img image, reg Register) ([]uint16, float64, error) {
	if m.id.FineEnergy && reg.FineAddr != 0 {
		words := img.words(reg.FineAddr, 4)
		v, err := DecodeFine(reg, words, m.id.MSWFirst())
		return words, v, err
	}
	words := img.words(reg.Addr, reg.Format.Words())
	v, err := Decode(reg, words, m.id.MSWFirst())
	return words, v, err
}

// readBlocks reads the plan. A meter that refuses a block's size with exception
// 03 gets a smaller plan, kept for the rest of the connection.
func (m *Meter) readBlocks(ctx context.Context, r Reader) (image, error) {
	for {
		img, failed, err := readPlan(ctx, r, m.plan)
		if err == nil || !errors.Is(err, modbus.ErrIllegalDataValue) || failed.Count <= 1 {
			return img, err
		}
		smaller := failed.Count / 2
		if failed.Count > 20 {
			smaller = 20 // the document's request-frame table says 1..20
		}
		plan, perr := Plan(m.regs, m.id.FineEnergy, smaller)
		if perr != nil {
			return image{}, errors.Join(err, perr)
		}
		m.log.Info("meter refused the block size; reading smaller blocks", "from", failed.Count, "to", smaller)
		m.id.MaxWords, m.plan = smaller, plan
	}
}

func readPlan(ctx context.Context, r Reader, plan []Block) (image, Block, error) {
	img := image{}
	for _, b := range plan {
		words, err := r.ReadRegisters(ctx, b.Start, b.Count)
		if err != nil {
			return nil, b, fmt.Errorf("read %04Xh+%d: %w", b.Start, b.Count, err)
		}
		if len(words) != int(b.Count) {
			return nil, b, fmt.Errorf("read %04Xh+%d: got %d registers", b.Start, b.Count, len(words))
		}
		img[b] = words
	}
	return img, Block{}, nil
}

// image holds the words of one snapshot, by block.
type image map[Block][]uint16

func (img image) words(addr, n uint16) []uint16 {
	for b, w := range img {
		if addr >= b.Start && addr+n <= b.End() {
			return w[addr-b.Start : addr-b.Start+n]
		}
	}
	return nil
}

func (img image) allZero() bool {
	for _, w := range img {
		for _, x := range w {
			if x != 0 {
				return false
			}
		}
	}
	return true
}

func hexWords(words []uint16) string {
	parts := make([]string, len(words))
	for i, w := range words {
		parts[i] = fmt.Sprintf("%04X", w)
	}
	return strings.Join(parts, " ")
}
