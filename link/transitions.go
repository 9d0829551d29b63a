package link

import (
	"context"
	"errors"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/em340-bridge/em340-bridge/meter"
)

// change applies f to the status under the lock and, if the state or cause
// changed, logs it once and tells OnChange. Retries that fail the same way
// change nothing, so they are not logged again.
func (l *Link) change(f func(now time.Time)) {
	l.notify.Lock()
	defer l.notify.Unlock()
	l.mu.Lock()
	before := l.status
	f(time.Now())
	after := l.status
	if after.State == before.State && after.Cause == before.Cause {
		after.Since = before.Since
		l.status.Since = before.Since
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	level := slogLevel(after.State)
	l.log.Log(context.Background(), level, "serial link "+string(after.State),
		"cause", string(after.Cause), "detail", after.Detail, "device", after.Device,
		"reconnects", after.Reconnects, "last_outage", after.LastOutage)
	if l.cfg.OnChange != nil {
		l.cfg.OnChange(after)
	}
}

// beginOutage marks the link lost and arms the offline timer.
func (l *Link) beginOutage(cause Cause, detail string) {
	l.change(func(now time.Time) {
		l.online = false
		l.lostAt = now
		l.outageID++
		l.status.State, l.status.Cause, l.status.Detail, l.status.Since = Reconnecting, cause, detail, now
		id := l.outageID
		if l.offlineTimer != nil {
			l.offlineTimer.Stop()
		}
		if l.cfg.OfflineAfter > 0 {
			l.offlineTimer = time.AfterFunc(l.cfg.OfflineAfter, func() { l.goOffline(id) })
		}
	})
}

// setCause records why the latest attempt failed.
func (l *Link) setCause(cause Cause, err error) {
	l.change(func(now time.Time) {
		l.status.Cause, l.status.Detail, l.status.Since = cause, err.Error(), now
		l.status.Device = l.resolved
	})
}

func (l *Link) goOffline(outage int) {
	l.change(func(now time.Time) {
		if l.outageID != outage || l.status.State != Reconnecting {
			return // recovered or lost again since the timer was armed
		}
		l.status.State, l.status.Since = Offline, now
	})
}

func (l *Link) goOnline(proveErr error) {
	l.change(func(now time.Time) {
		if l.offlineTimer != nil {
			l.offlineTimer.Stop()
		}
		l.outageID++
		l.online = true
		if l.everOnline {
			l.status.Reconnects++
			l.status.LastOutage = now.Sub(l.lostAt)
		}
		l.everOnline = true
		l.status.State, l.status.Cause, l.status.Detail, l.status.Since = Online, CauseNone, "", now
		l.status.Device = l.resolved
		if proveErr != nil {
			l.status.Cause, l.status.Detail = CauseWrongMeter, proveErr.Error()
		}
	})
}

// reader is the meter's view of an open port: every request keeps the meter's
// gap and is checked for signs that the adapter or the meter went away.
type reader struct {
	l *Link
	p port
}

func (r reader) ReadRegisters(ctx context.Context, addr, quantity uint16) ([]uint16, error) {
	if err := r.l.waitGap(ctx); err != nil {
		return nil, err
	}
	words, err := r.p.ReadRegisters(ctx, addr, quantity)
	r.l.afterRequest(err)
	return words, err
}

var _ meter.Reader = reader{} // the meter reads through the link

func (l *Link) waitGap(ctx context.Context) error {
	l.mu.Lock()
	wait := time.Until(l.lastIO.Add(l.cfg.MinGap))
	l.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Link) afterRequest(err error) {
	l.mu.Lock()
	l.lastIO = time.Now()
	switch {
	case err == nil || isException(err):
		l.noAnswer = 0
		l.mu.Unlock()
		return
	case isNoAnswer(err):
		l.noAnswer++
	}
	silent := l.noAnswer >= l.cfg.MaxNoAnswer
	l.mu.Unlock()
	switch {
	case isAdapterGone(err):
		l.reportLost(CauseAdapterMissing)
	case isNoAnswer(err) && !l.stillPresent():
		// A garbled or missing reply while the node is gone is the unplug, not the meter.
		l.reportLost(CauseAdapterMissing)
	case silent:
		l.reportLost(CauseMeterSilent)
	}
}

func (l *Link) reportLost(cause Cause) {
	select {
	case l.lost <- cause:
	default:
	}
}

// isException: the meter answered, with a Modbus exception; the line is fine.
func isException(err error) bool {
	return errors.Is(err, modbus.ErrIllegalFunction) || errors.Is(err, modbus.ErrIllegalDataAddress) ||
		errors.Is(err, modbus.ErrIllegalDataValue) || errors.Is(err, modbus.ErrServerDeviceFailure) ||
		errors.Is(err, modbus.ErrServerDeviceBusy) || errors.Is(err, modbus.ErrAcknowledge)
}
