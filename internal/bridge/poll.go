package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
)

// slot is one configured meter: its address on the line and what the bridge
// knows of it. Its fields are touched only inside the link's sessions (Prove
// at a connect, Do in the poll loop), which the link runs one at a time.
type slot struct {
	unit      uint8
	deviceID  string // configured id; "" = the meter's serial number
	meter     *meter.Meter
	announced uint64 // meter.Revision() last handed to the publisher; 0 = never
	log       *slog.Logger
}

// prove identifies the meter at a connect of the line (link.Prover) or when
// a meter that stopped answering is tried again.
func (s *slot) prove(ctx context.Context, r meter.Reader, pub *publisher) error {
	_, err := s.meter.Connect(ctx, r)
	if errors.Is(err, meter.ErrWrongMeter) && s.deviceID == "" {
		s.meter.Forget() // a device of its own, with totals of its own
	}
	// Under a fixed device id the new meter feeds the old entities: its
	// totals must not fall below the old meter's, so the validator keeps
	// them and rejects lower ones.
	if err == nil || errors.Is(err, meter.ErrWrongMeter) {
		s.announce(pub)
	}
	return err
}

// announce tells the publisher what the meter is, when that changed.
func (s *slot) announce(pub *publisher) {
	if rev := s.meter.Revision(); rev != s.announced {
		s.announced = rev
		pub.meterIdentified(s.unit, s.meter.Identity(), s.meter.Registers())
	}
}

// pollLoop reads every meter every poll interval, and at once when the link
// comes back.
type pollLoop struct {
	cfg       config.Config
	link      *link.Link
	slots     []*slot
	pub       *publisher
	linkUp    <-chan struct{}
	beat      func()
	before    func(context.Context)
	onReading func(unit uint8, r meter.Reading)
	log       *slog.Logger
	lastPoll  *atomic.Int64
}

// retry is when a meter that does not answer while others do is tried again.
type retry struct {
	failures int
	next     time.Time
}

func poll(ctx context.Context, p pollLoop) {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	backoff := link.ReconnectBackoff{Min: p.cfg.ReconnectMinDelay, Max: p.cfg.ReconnectMaxDelay, Factor: p.cfg.ReconnectFactor}
	failures := make([]failureLog, len(p.slots))
	retries := make([]retry, len(p.slots))
	for {
		p.beat()
		if p.before != nil {
			p.before(ctx)
		}
		for i, s := range p.slots {
			st := p.link.Status()
			if st.State != link.Online || ctx.Err() != nil {
				break
			}
			if !p.due(st, s.unit, &retries[i], backoff) {
				continue
			}
			p.read(ctx, s, &failures[i])
		}
		p.lastPoll.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.linkUp:
		}
	}
}

// due says whether a meter is read this cycle. One that answers always is;
// one that does not, while others on the line do, is tried again on the
// reconnect schedule, so a dead meter costs the bus one timeout now and then
// rather than one every poll.
func (p pollLoop) due(st link.Status, unit uint8, r *retry, backoff link.ReconnectBackoff) bool {
	us, _ := st.Unit(unit)
	now := time.Now()
	switch {
	case us.Answering:
		*r = retry{}
		return true
	case r.failures == 0: // just seen silent: the link has tried it already
		r.failures, r.next = 1, now.Add(backoff.Delay(1))
		return false
	case now.Before(r.next):
		return false
	}
	r.failures++
	r.next = now.Add(backoff.Delay(uint(r.failures)))
	return true
}

// read takes one snapshot of a meter, proving it first when the link says it
// does not answer (it may be another meter by now), and publishes it.
func (p pollLoop) read(ctx context.Context, s *slot, failures *failureLog) {
	var reading meter.Reading
	var refreshDue bool
	err := p.link.Do(ctx, s.unit, func(r meter.Reader) error { // the meter is touched only inside a session
		if us, _ := p.link.Status().Unit(s.unit); !us.Answering {
			if err := s.prove(ctx, r, p.pub); err != nil && !errors.Is(err, meter.ErrWrongMeter) {
				return err
			}
		}
		var err error
		reading, err = s.meter.Read(ctx, r)
		s.announce(p.pub) // a snapshot may have taught what the meter has
		refreshDue = s.meter.RefreshDue()
		return err
	})
	switch {
	case err == nil:
		failures.recovered(s.log)
		p.pub.readingTaken(s.unit, reading)
		if p.onReading != nil {
			p.onReading(s.unit, reading)
		}
		if refreshDue {
			p.refresh(ctx, s)
		}
	case errors.Is(err, link.ErrNotOnline), errors.Is(err, context.Canceled):
	default:
		failures.failed(s.log, err)
	}
}

// failureLog logs failed snapshots once per change of reason, not at every
// poll: a line that keeps failing the same way says so once, then at Debug.
type failureLog struct {
	run  int
	last string
}

func (f *failureLog) failed(log *slog.Logger, err error) {
	f.run++
	if msg := err.Error(); msg != f.last {
		f.last = msg
		log.Warn("snapshot failed; nothing published", "err", err, "in_a_row", f.run)
		return
	}
	log.Debug("snapshot failed; nothing published", "err", err, "in_a_row", f.run)
}

func (f *failureLog) recovered(log *slog.Logger) {
	if f.run > 0 {
		log.Info("snapshots succeed again", "failed_in_a_row", f.run)
	}
	*f = failureLog{}
}

// refresh reads the rest of the identity after a reconnect that proved only
// the serial, once the first snapshot is on its way, and tells HA only if
// something changed.
func (p pollLoop) refresh(ctx context.Context, s *slot) {
	err := p.link.Do(ctx, s.unit, func(r meter.Reader) error {
		id, changed, err := s.meter.Refresh(ctx, r)
		if changed {
			s.log.Info("the meter's identity changed", "firmware", id.Firmware, "mode", id.MeasurementModeName(),
				"system", id.MeasuringSystemName(), "wiring", id.WiringStatus())
		}
		s.announce(p.pub)
		return err
	})
	if err != nil && !errors.Is(err, link.ErrNotOnline) && !errors.Is(err, context.Canceled) {
		s.log.Warn("cannot refresh the meter's identity; trying again after the next snapshot", "err", err)
	}
}
