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
	Registers    []Register   // what to poll; the whole table when nil
	ConfirmAfter int          // K, agreeing reads that confirm a jump or a partial reset; DefaultConfirmAfter if < 2
	Logger       *slog.Logger // rejections are logged here with their raw registers
}

// Meter reads and validates snapshots of one EM340. It keeps what it learnt at
// connect (identity, block plan) and the energy totals it accepted.
type Meter struct {
	regs      []Register
	validator *Validator
	log       *slog.Logger

	id         Identity
	connected  bool
	refreshDue bool // a fast reconnect proved only the serial
	fullNext   bool // a refresh found another serial: the next Connect reads everything
	plan       []Block
	rejected   atomic.Uint64
	reasons    map[string]string // key ("" for the snapshot) → kind of its current run of rejections
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
	return &Meter{regs: regs, validator: NewValidator(opts.ConfirmAfter), log: log,
		reasons: map[string]string{}}
}

// Registers is what this meter polls.
func (m *Meter) Registers() []Register { return m.regs }

// Identity is what the meter said at the last Connect.
func (m *Meter) Identity() Identity { return m.id }

// Plan is the block plan in use.
func (m *Meter) Plan() []Block { return m.plan }

// Rejected counts, since New, every value that failed validation and every
// snapshot dropped whole (all zero, garbled); a total not yet confirmed is not
// a rejection.
func (m *Meter) Rejected() uint64 { return m.rejected.Load() }

// Connect proves which meter answers. At the first Connect it reads the whole
// identity and decides the block size and whether the 3-decimal totals exist.
// At a reconnect it reads only the serial number (one request): a serial is
// the meter's own, factory-set and unique, so the same serial at the same
// address is the same meter, whose model, register layout and Wh registers
// cannot have changed; its first snapshot can follow at once. What a user can
// change on the keypad (measurement mode, wiring) is read again by Refresh
// after that snapshot. A different serial takes the full path and is returned
// with ErrWrongMeter.
func (m *Meter) Connect(ctx context.Context, r Reader) (Identity, error) {
	if m.connected && !m.fullNext {
		words, err := r.ReadRegisters(ctx, AddrSerialNumber, SerialNumberWords)
		if err != nil {
			return m.id, fmt.Errorf("read serial number: %w", err)
		}
		if decodeSerial(words) == m.id.Serial {
			m.refreshDue = true
			return m.id, nil
		}
	}
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
		// The totals stay: whether the new meter continues the old one's
		// entities (none of its totals may then fall below the old ones) or
		// becomes a device of its own (Forget) is the caller's choice.
		wrong = fmt.Errorf("serial %q, expected %q: %w", id.Serial, m.id.Serial, ErrWrongMeter)
	}
	m.id, m.plan, m.connected, m.refreshDue, m.fullNext = id, plan, true, false, false
	return id, wrong
}

// RefreshDue reports that a reconnect took the fast path and the rest of the
// identity is still to be read again (Refresh).
func (m *Meter) RefreshDue() bool { return m.refreshDue }

// Refresh reads the whole identity again after a fast reconnect and reports
// whether anything a user sees changed (firmware, measurement mode, measuring
// system, wiring status, largest read, 3-decimal totals). A changed largest
// read or Wh probe gives a new block plan. A different serial is
// ErrWrongMeter and changes nothing: the next Connect takes the full path.
func (m *Meter) Refresh(ctx context.Context, r Reader) (Identity, bool, error) {
	id, err := ReadIdentity(ctx, r)
	if err != nil {
		return m.id, false, err
	}
	if id.Serial != m.id.Serial {
		m.refreshDue, m.fullNext = false, true // prove it from scratch next time
		return m.id, false, fmt.Errorf("serial %q, expected %q: %w", id.Serial, m.id.Serial, ErrWrongMeter)
	}
	m.refreshDue = false
	// Keep a block size the meter refused during this connection.
	id.MaxWords = min(id.MaxWords, m.id.MaxWords)
	if id == m.id {
		return id, false, nil
	}
	if id.FineEnergy != m.id.FineEnergy || id.MaxWords != m.id.MaxWords {
		plan, err := Plan(m.regs, id.FineEnergy, id.MaxWords)
		if err != nil {
			return m.id, false, err
		}
		m.plan = plan
	}
	m.id = id
	return id, true, nil
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
	if err != nil && m.refreshDue && errors.Is(err, modbus.ErrIllegalDataAddress) {
		// The plan of a fast reconnect no longer fits (a meter that cannot
		// lose table 2.5 did): learn the identity again and read once more.
		if _, _, rerr := m.Refresh(ctx, r); rerr != nil {
			return Reading{}, errors.Join(err, rerr)
		}
		img, err = m.readBlocks(ctx, r)
	}
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
