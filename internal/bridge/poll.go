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

// pollLoop reads a snapshot every poll interval, and at once when the link
// comes back.
type pollLoop struct {
	cfg       config.Config
	link      *link.Link
	meter     *meter.Meter
	pub       *publisher
	linkUp    <-chan struct{}
	beat      func()
	before    func(context.Context)
	onReading func(meter.Reading)
	log       *slog.Logger
	lastPoll  *atomic.Int64
}

func poll(ctx context.Context, p pollLoop) {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	var failures failureLog
	for {
		p.beat()
		if p.before != nil {
			p.before(ctx)
		}
		var reading meter.Reading
		var refreshDue bool
		err := p.link.Do(ctx, func(r meter.Reader) error { // the meter is touched only inside a session
			var err error
			reading, err = p.meter.Read(ctx, r)
			refreshDue = p.meter.RefreshDue()
			return err
		})
		p.lastPoll.Store(time.Now().UnixNano())
		switch {
		case err == nil:
			failures.recovered(p.log)
			p.pub.readingTaken(reading)
			if p.onReading != nil {
				p.onReading(reading)
			}
			if refreshDue {
				p.refresh(ctx)
			}
		case errors.Is(err, link.ErrNotOnline), errors.Is(err, context.Canceled):
		default:
			failures.failed(p.log, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.linkUp:
		}
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
func (p pollLoop) refresh(ctx context.Context) {
	err := p.link.Do(ctx, func(r meter.Reader) error {
		id, changed, err := p.meter.Refresh(ctx, r)
		if changed {
			p.log.Info("the meter's identity changed", "firmware", id.Firmware, "mode", id.MeasurementModeName(),
				"system", id.MeasuringSystemName(), "wiring", id.WiringStatus())
			p.pub.meterIdentified(id)
		}
		return err
	})
	if err != nil && !errors.Is(err, link.ErrNotOnline) && !errors.Is(err, context.Canceled) {
		p.log.Warn("cannot refresh the meter's identity; trying again after the next snapshot", "err", err)
	}
}
