package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	before := l.status.clone()
	f(time.Now())
	after := l.status.clone()
	if after.State == before.State && after.Cause == before.Cause && unitsAlike(before.Units, after.Units) {
		after.Since = before.Since
		l.status.Since = before.Since
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	if after.State != before.State || after.Cause != before.Cause {
		level := slogLevel(after.State)
		l.log.Log(context.Background(), level, "serial link "+string(after.State),
			"cause", string(after.Cause), "detail", after.Detail, "device", after.Device,
			"reconnects", after.Reconnects, "last_outage", after.LastOutage)
	}
	logUnitChanges(l.log, before.Units, after.Units)
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
		for i := range l.status.Units { // none answers on a line that is gone
			l.status.Units[i] = UnitStatus{Unit: l.status.Units[i].Unit}
		}
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

func (l *Link) goOnline(units []UnitStatus) {
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
		l.status.State, l.status.Since = Online, now
		l.status.Device = l.resolved
		l.status.Units = units
		l.status.Cause, l.status.Detail = onlineCause(units)
	})
}

// onlineCause is what an online link says about its meters: nothing when all
// answer and are the expected ones, else the first that is not.
func onlineCause(units []UnitStatus) (Cause, string) {
	for _, u := range units {
		if u.Cause != CauseNone {
			if len(units) == 1 {
				return u.Cause, u.Detail
			}
			return u.Cause, fmt.Sprintf("unit %d: %s", u.Unit, u.Detail)
		}
	}
	return CauseNone, ""
}

// unitAnswers records that the meter at index i answers again.
func (l *Link) unitAnswers(i int) {
	l.change(func(time.Time) {
		if l.status.State != Online {
			return
		}
		l.status.Units[i].Answering, l.status.Units[i].Cause, l.status.Units[i].Detail = true, CauseNone, ""
		l.status.Cause, l.status.Detail = onlineCause(l.status.Units)
	})
}

// unitSilent records that the meter at index i stopped answering; when none
// answers any more, the link is lost and reconnects.
func (l *Link) unitSilent(i int, err error) {
	allSilent := false
	l.change(func(time.Time) {
		if l.status.State != Online {
			return
		}
		u := &l.status.Units[i]
		u.Answering, u.Cause, u.Detail = false, CauseMeterSilent, err.Error()
		allSilent = !slices.ContainsFunc(l.status.Units, func(u UnitStatus) bool { return u.Answering })
		if !allSilent {
			l.status.Cause, l.status.Detail = onlineCause(l.status.Units)
		}
	})
	if allSilent {
		l.reportLost(CauseMeterSilent)
	}
}

// unitsAlike: no meter changed whether it answers or why not.
func unitsAlike(a, b []UnitStatus) bool {
	return slices.EqualFunc(a, b, func(x, y UnitStatus) bool {
		return x.Unit == y.Unit && x.Answering == y.Answering && x.Cause == y.Cause
	})
}

// logUnitChanges logs each meter that started or stopped answering, once.
func logUnitChanges(log *slog.Logger, before, after []UnitStatus) {
	if len(before) != len(after) {
		return
	}
	for i, u := range after {
		switch b := before[i]; {
		case b.Answering && !u.Answering && u.Cause == CauseMeterSilent:
			log.Warn("meter not answering", "unit", u.Unit, "err", u.Detail)
		case !b.Answering && u.Answering && b.Cause == CauseMeterSilent:
			log.Info("meter answers again", "unit", u.Unit)
		}
	}
}

// unitCount is what the link counts about one meter, under mu.
type unitCount struct {
	noAnswer int // consecutive unanswered requests
	failedDo int // consecutive failed sessions
}

// reader is one meter's view of an open port: every request keeps the bus's
// gap and is checked for signs that the line or the meter went away.
type reader struct {
	l    *Link
	p    port
	unit int // index in Config.Units
}

func (r reader) ReadRegisters(ctx context.Context, addr, quantity uint16) ([]uint16, error) {
	if err := r.l.waitGap(ctx); err != nil {
		return nil, err
	}
	words, err := r.p.ReadRegisters(ctx, r.l.cfg.Units[r.unit], addr, quantity)
	r.l.afterRequest(r.unit, err)
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

func (l *Link) afterRequest(i int, err error) {
	l.mu.Lock()
	l.lastIO = time.Now()
	c := &l.counts[i]
	switch {
	case err == nil || isException(err):
		c.noAnswer = 0
		l.mu.Unlock()
		return
	case isNoAnswer(err):
		c.noAnswer++
	}
	silent := c.noAnswer >= l.cfg.MaxNoAnswer
	answering := l.status.Units[i].Answering
	l.mu.Unlock()
	switch {
	case isAdapterGone(err):
		l.reportLost(l.lossCause(err))
	case isNoAnswer(err) && !l.stillPresent():
		// A garbled or missing reply while the node is gone is the unplug, not the meter.
		l.reportLost(CauseAdapterMissing)
	case silent && answering:
		l.unitSilent(i, err)
	}
}

// lossCause names a request error that means the line is gone.
func (l *Link) lossCause(err error) Cause {
	if l.gateway != nil {
		if c := classifyGateway(err); c != CauseError {
			return c
		}
		return CauseGatewayClosed
	}
	return CauseAdapterMissing
}

func (l *Link) reportLost(cause Cause) {
	select {
	case l.lost <- cause:
	default:
	}
}

// isException: the meter answered, with a Modbus exception; the line is fine.
// (A gateway's own exceptions 0Ah and 0Bh say the meter did not: isNoAnswer.)
func isException(err error) bool {
	return errors.Is(err, modbus.ErrIllegalFunction) || errors.Is(err, modbus.ErrIllegalDataAddress) ||
		errors.Is(err, modbus.ErrIllegalDataValue) || errors.Is(err, modbus.ErrServerDeviceFailure) ||
		errors.Is(err, modbus.ErrServerDeviceBusy) || errors.Is(err, modbus.ErrAcknowledge)
}
