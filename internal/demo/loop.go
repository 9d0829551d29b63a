package demo

import (
	"context"
	"time"
)

// loop is the demo's one goroutine that touches the screen: it shows what
// reaches HA, unplugs and replugs the adapter, and answers keys. It returns
// when ctx is done or the user quits, or when the bridge exits by itself
// (bridgeExited).
func (s *session) loop(ctx context.Context, every time.Duration, keys <-chan byte,
	bridgeDone <-chan struct{}) (bridgeExited bool, err error) {
	var auto <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		auto, s.every, s.next = t.C, every, time.Now().Add(every)
		defer func() { s.next = time.Time{} }()
		s.retime = func() { t.Reset(every) }
	}
	var redraw <-chan time.Time
	if s.scr.tty {
		t := time.NewTicker(redrawEvery)
		defer t.Stop()
		redraw = t.C
		s.draw(time.Now())
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-bridgeDone:
			return true, nil
		case <-s.sub.After(s.seen):
			s.messages()
		case <-auto:
			err = s.unplug(false)
		case <-s.cycle.replugDue():
			err = s.replug()
		case k := <-keys:
			switch k {
			case keyQuit, keyQuit - 'a' + 'A', keyCtrlC, keyCtrlD:
				return false, nil
			case keyUnplug, keyUnplug - 'a' + 'A', ' ':
				if s.retime != nil {
					s.retime() // the next automatic unplug counts from this one
				}
				err = s.unplug(true)
			}
		case <-redraw:
		}
		if err != nil {
			return false, err
		}
		s.draw(time.Now())
	}
}
