package meter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	Registers    []Register   // what to poll of what the meter has; the whole table when nil
	ConfirmAfter int          // K, agreeing reads that confirm a jump or a partial reset; DefaultConfirmAfter if < 2
	Logger       *slog.Logger // rejections and what the meter lacks are logged here
}

// Meter reads and validates snapshots of one meter of the family. It keeps
// what it learnt at connect and from the meter's answers (identity, what the
// meter has, block plan) and the energy totals it accepted.
type Meter struct {
	table     []Register // Options.Registers or the whole table
	validator *Validator
	log       *slog.Logger

	id         Identity
	holes      []Area     // addresses the meter answered with exception 02; kept while the serial is the same
	regs       []Register // describe(table, id, holes)
	plan       []Block
	revision   uint64
	connected  bool
	refreshDue bool // a fast reconnect proved only the serial
	fullNext   bool // a refresh found another serial: the next Connect reads everything
	rejected   atomic.Uint64
	reasons    map[string]string // key ("" for the snapshot) → kind of its current run of rejections
}

// New returns a Meter; call Connect before Read.
func New(opts Options) *Meter {
	table := opts.Registers
	if table == nil {
		table = Registers()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Meter{table: table, regs: table, validator: NewValidator(opts.ConfirmAfter), log: log,
		reasons: map[string]string{}}
}

// Registers is what this meter has and polls, in table order: the table
// less the values its measuring system does not wire (no L3 on 2-phase + N;
// only L1 and system values on 1-phase), its export counters in measurement
// mode A, and what it answered with exception 02; with each range scaled by
// its CT and VT ratios. Describe the meter from it (not from the table): it
// changes with Revision. Before the first Connect it is the whole table.
func (m *Meter) Registers() []Register { return m.regs }

// Identity is what the meter said at the last Connect or Refresh, with what
// its snapshots taught since (MaxWords, FineEnergy); it changes with Revision.
func (m *Meter) Identity() Identity { return m.id }

// Revision counts the changes of Identity and Registers since New: at
// Connect and Refresh, and during Read when a snapshot learns something —
// the first snapshot of a meter settles FineEnergy (table 2.5 answers or
// not) and MaxWords (a refused block size), and any snapshot may find a
// register the meter lacks. A caller that describes the meter (discovery)
// describes it again when Revision differs from the one it last described.
// Like Identity and Registers, call it from the goroutine that calls Read.
func (m *Meter) Revision() uint64 { return m.revision }

// Plan is the block plan in use.
func (m *Meter) Plan() []Block { return m.plan }

// Rejected counts, since New, every value that failed validation and every
// snapshot dropped whole (all zero, garbled); a total not yet confirmed is not
// a rejection.
func (m *Meter) Rejected() uint64 { return m.rejected.Load() }

// Connect proves which meter answers. At the first Connect it reads the whole
// identity (readIdentity: 6 requests); the first Read then settles the block
// size and whether the 3-decimal totals exist. At a reconnect it reads only
// the serial number (one request): a serial is the meter's own, factory-set
// and unique, so the same serial at the same address is the same meter, whose
// model, register layout and Wh registers cannot have changed; its first
// snapshot can follow at once. What a user can change on the keypad
// (measurement mode and system, wiring) is read again by Refresh after that
// snapshot. A different serial takes the full path (5 requests more, the
// serial being known) and is returned with ErrWrongMeter.
func (m *Meter) Connect(ctx context.Context, r Reader) (Identity, error) {
	var serial string
	if m.connected && !m.fullNext {
		var err error
		if serial, err = readSerial(ctx, r); err != nil {
			return m.id, err
		}
		if serial == m.id.Serial {
			m.refreshDue = true
			return m.id, nil
		}
	}
	id, err := readIdentity(ctx, r, serial)
	if err != nil {
		return id, err
	}
	if !ModelOf(id.ModelCode).Known {
		m.log.Warn("unknown model code: read as an EM340; please report it with the meter's type",
			"model_code", id.ModelCode, "serial", id.Serial)
	}
	var holes []Area
	var wrong error
	switch {
	case !m.connected:
	case id.Serial == m.id.Serial:
		// The same meter again: what its answers taught still holds.
		holes, id.MaxWords, id.FineEnergy = m.holes, m.id.MaxWords, m.id.FineEnergy
	default:
		// The totals stay: whether the new meter continues the old one's
		// entities (none of its totals may then fall below the old ones) or
		// becomes a device of its own (Forget) is the caller's choice.
		wrong = fmt.Errorf("serial %q, expected %q: %w", id.Serial, m.id.Serial, ErrWrongMeter)
	}
	if err := m.learn(id, holes); err != nil {
		return id, err
	}
	m.connected, m.refreshDue, m.fullNext = true, false, false
	return id, wrong
}

// RefreshDue reports that a reconnect took the fast path and the rest of the
// identity is still to be read again (Refresh).
func (m *Meter) RefreshDue() bool { return m.refreshDue }

// Refresh reads again, after a fast reconnect, what may differ between two
// connections of the same meter (serial, firmware, measuring system and
// ratios, measurement mode, wiring status: 4 requests) and reports whether
// Identity or Registers changed: a change of mode or system changes what is
// polled. A different serial is ErrWrongMeter and changes nothing: the next
// Connect takes the full path.
func (m *Meter) Refresh(ctx context.Context, r Reader) (Identity, bool, error) {
	serial, err := readSerial(ctx, r)
	if err != nil {
		return m.id, false, err
	}
	if serial != m.id.Serial {
		m.refreshDue, m.fullNext = false, true // prove it from scratch next time
		return m.id, false, fmt.Errorf("serial %q, expected %q: %w", serial, m.id.Serial, ErrWrongMeter)
	}
	id := m.id
	if err := readSettings(ctx, r, &id); err != nil {
		return m.id, false, err
	}
	m.refreshDue = false
	before := m.revision
	if err := m.learn(id, m.holes); err != nil {
		return m.id, false, err
	}
	return m.id, m.revision != before, nil
}

// learn sets what the meter is and has, and the plan that reads it.
func (m *Meter) learn(id Identity, holes []Area) error {
	regs := describe(m.table, id, holes)
	plan, err := planIn(without(ReadableAreas(), holes), regs, id.FineEnergy, id.MaxWords)
	if err != nil {
		return err
	}
	if id != m.id || !sameRegisters(regs, m.regs) {
		m.revision++
	}
	m.id, m.holes, m.regs, m.plan = id, holes, regs, plan
	m.validator.maxPower = maxSystemPower * id.scale(ActivePower)
	return nil
}

// ErrGarbledSnapshot is returned by Read when several values of one snapshot
// fail their range check: the frame was shifted or garbled, so the values that
// happen to pass are not trusted either (measured: "383.7 V" read from a W register).
var ErrGarbledSnapshot = errors.New("several values outside their range: a shifted or garbled frame")

// garbledAfter is how many values of one snapshot may fail their range check
// before the whole snapshot is dropped. One is a stray value, dropped alone;
// two unrelated registers out of range at once is what a shifted frame does.
// The meter's own overflow sentinel 7FFFFFFFh ("EEE") is not counted: it is the
// meter speaking, and an overload puts it on several related values at once.
const garbledAfter = 2

// decoded is one register of a snapshot on its way through validation.
type decoded struct {
	reg   Register
	words []uint16
	value float64
	err   error
}

// Read takes one snapshot: the planned block reads, decoding and validation.
// A value that fails validation is counted, logged with its raw registers (at
// Warn when the reason for its key changes, at Debug while it repeats) and left
// out of the Reading; a total not yet confirmed (ErrUnconfirmed) is left out
// too, logged at Debug and not counted. An error means no part of the snapshot
// is usable: it failed at the I/O level, read all zero (ErrAllZero) or was
// garbled (ErrGarbledSnapshot); then the validator's totals are not touched.
// Read, Restore and Accepted belong to one goroutine.
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
		m.logRejection("", nil, ErrAllZero)
		return Reading{}, ErrAllZero
	}
	values := make([]decoded, len(m.regs))
	var outOfRange []string
	for i, reg := range m.regs {
		words, value, err := m.decode(img, reg)
		if err == nil {
			err = checkRange(reg, value, m.id.MeasurementMode)
		}
		values[i] = decoded{reg, words, value, err}
		if err != nil && !errors.Is(err, ErrOverflow) {
			outOfRange = append(outOfRange, reg.Key)
		}
	}
	if len(outOfRange) >= garbledAfter {
		err := fmt.Errorf("%d values (%s): %w", len(outOfRange), strings.Join(outOfRange, ", "), ErrGarbledSnapshot)
		m.rejected.Add(1)
		m.logRejection("", nil, err)
		return Reading{}, err
	}
	m.accepted("")
	// Lifetime totals first: when one is rejected, the snapshot's partial
	// counters are suspect too and must not advance toward a reset.
	suspect := false
	for i, d := range values {
		if d.err == nil && d.reg.Total && !d.reg.Partial {
			values[i].err = m.validator.checkTotal(d.reg, d.value, at)
			suspect = suspect || values[i].err != nil && !errors.Is(values[i].err, ErrUnconfirmed)
		}
	}
	for i, d := range values {
		switch {
		case d.err != nil || !d.reg.Partial:
		case suspect:
			values[i].err = fmt.Errorf("%s withheld: %w", d.reg.Key, ErrSuspectSnapshot)
		default:
			values[i].err = m.validator.checkTotal(d.reg, d.value, at)
		}
	}
	reading := Reading{Time: at, Fine: m.id.FineEnergy, Values: make([]Value, 0, len(m.regs))}
	for _, d := range values {
		switch {
		case errors.Is(d.err, ErrUnconfirmed), errors.Is(d.err, ErrSuspectSnapshot):
			// Not a bad value of its own: logged, not counted.
			m.log.Debug("value withheld", "key", d.reg.Key, "raw", hexWords(d.words), "reason", d.err)
		case d.err != nil:
			m.rejected.Add(1)
			m.logRejection(d.reg.Key, d.words, d.err)
		default:
			m.accepted(d.reg.Key)
			reading.Values = append(reading.Values, Value{Register: d.reg, Value: d.value})
		}
	}
	return reading, nil
}

// Forget drops the accepted energy totals: a different meter answers and
// becomes a device of its own.
func (m *Meter) Forget() { m.validator.Forget() }

// Restore gives the validator the accepted energy totals of an earlier run
// of the same meter (see Validator.Restore).
func (m *Meter) Restore(totals map[string]Accepted) { m.validator.Restore(totals) }

// Accepted returns the last accepted value of every energy total, by key,
// for the caller to persist.
func (m *Meter) Accepted() map[string]Accepted { return m.validator.Accepted() }

// logRejection logs a rejection of key ("" for the whole snapshot) at Warn
// when its reason differs from the key's last one, and at Debug while it
// repeats, so a glitch that lasts a hundred snapshots is one warning.
func (m *Meter) logRejection(key string, words []uint16, err error) {
	reason := reasonOf(err)
	level := slog.LevelWarn
	if last, seen := m.reasons[key]; seen && last == reason {
		level = slog.LevelDebug
	}
	m.reasons[key] = reason
	msg, attrs := "value rejected", []any{"key", key, "raw", hexWords(words), "reason", err}
	if key == "" {
		msg, attrs = "snapshot rejected", []any{"reason", err}
	}
	m.log.Log(context.Background(), level, msg, attrs...)
}

// accepted ends key's run of rejections: its next one is news again.
func (m *Meter) accepted(key string) { delete(m.reasons, key) }

// reasonOf names the kind of a rejection, which stays the same while the
// values in its message change from one snapshot to the next.
func reasonOf(err error) string {
	for _, kind := range []error{ErrGarbledSnapshot, ErrAllZero, ErrOverflow, ErrOutOfRange, ErrNegativeInModeA,
		ErrZeroTotal, ErrFallingTotal, ErrImplausibleJump} {
		if errors.Is(err, kind) {
			return kind.Error()
		}
	}
	return "decode"
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

// readBlocks reads the plan, and learns from what the meter refuses:
//   - exception 03 to a block's size: smaller blocks, kept while the serial is
//     the same (MaxWords);
//   - exception 02 to table 2.5: a meter from before October 2018 (FineEnergy
//     false); the 0.1 kWh totals of the blocks already read serve the snapshot;
//   - exception 02 to another block: the meter lacks something in it, which
//     findAbsent finds; dropped from Registers, kept while the serial is the
//     same, and the words of the rest serve the snapshot.
func (m *Meter) readBlocks(ctx context.Context, r Reader) (image, error) {
	for {
		img, failed, err := m.readPlan(ctx, r)
		if err == nil || !errors.Is(err, modbus.ErrIllegalDataValue) || failed.Count <= 1 {
			return img, err
		}
		id := m.id
		id.MaxWords = failed.Count / 2
		if failed.Count > 20 {
			id.MaxWords = 20 // the document's request-frame table says 1..20
		}
		if lerr := m.learn(id, m.holes); lerr != nil {
			return nil, errors.Join(err, lerr)
		}
		m.log.Info("meter refused the block size; reading smaller blocks", "from", failed.Count, "to", id.MaxWords)
	}
}

// readPlan reads the plan once, learning from exception 02 as it goes; on an
// error it returns the block that failed.
func (m *Meter) readPlan(ctx context.Context, r Reader) (img image, failed Block, err error) {
	img = image{}
	id, holes := m.id, m.holes
	defer func() {
		if id != m.id || len(holes) != len(m.holes) {
			err = errors.Join(err, m.learnt(id, holes))
		}
	}()
	for _, b := range m.plan {
		if inFineArea(b) && !id.FineEnergy {
			continue // an earlier block of table 2.5 was refused
		}
		words, err := readBlock(ctx, r, b)
		switch {
		case err == nil:
			img[b] = words
		case !errors.Is(err, modbus.ErrIllegalDataAddress):
			return nil, b, err
		case inFineArea(b):
			id.FineEnergy = false
		default:
			absent, err := findAbsent(ctx, r, parts(b, m.regs), img)
			if err != nil {
				return nil, b, err
			}
			holes = append(slices.Clip(holes), absent...)
		}
	}
	if len(m.plan) == 0 {
		return nil, Block{}, errors.New("meter: no register to read")
	}
	return img, Block{}, nil
}

// learnt applies and logs, once, what a snapshot taught about the meter.
func (m *Meter) learnt(id Identity, holes []Area) error {
	if id.FineEnergy != m.id.FineEnergy {
		m.log.Info("meter has no 3-decimal totals (table 2.5 answers exception 02): energy in 0.1 kWh steps")
	}
	if len(holes) != len(m.holes) {
		var keys []string
		for _, reg := range m.regs {
			if overlaps(holes[len(m.holes):], reg.Addr, reg.Format.Words()) {
				keys = append(keys, reg.Key)
			}
		}
		var addrs []string
		for _, h := range holes[len(m.holes):] {
			addrs = append(addrs, fmt.Sprintf("%04Xh+%d", h.Start, h.End-h.Start))
		}
		m.log.Warn("meter lacks registers (exception 02): no longer read or described", "keys", keys, "addresses", addrs)
	}
	return m.learn(id, holes)
}

func inFineArea(b Block) bool {
	return b.Start >= AddrFineEnergy && b.End() <= AddrFineEnergy+FineEnergyWords
}

func readBlock(ctx context.Context, r Reader, b Block) ([]uint16, error) {
	words, err := r.ReadRegisters(ctx, b.Start, b.Count)
	if err != nil {
		return nil, fmt.Errorf("read %04Xh+%d: %w", b.Start, b.Count, err)
	}
	if len(words) != int(b.Count) {
		return nil, fmt.Errorf("read %04Xh+%d: got %d registers", b.Start, b.Count, len(words))
	}
	return words, nil
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
