package demo

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/internal/hass"
)

// session is the running demo as the user follows it: what HA knows, the
// unplug cycle, and the screen both are told on. Only the demo's loop uses it.
type session struct {
	scr    *screen
	ha     *hass.HA         // what HA knows
	sub    *hass.Subscriber // HA's subscriber, whose messages ha takes
	seen   int              // the subscriber's mark after the last message taken
	log    *slog.Logger     // what HA would warn about
	cycle  *cycle
	every  time.Duration // automatic unplugs; 0 = only on a key press
	next   time.Time     // the next automatic unplug; zero = none
	retime func()        // restarts the automatic unplugs' clock; nil without them
	keys   bool          // the user can press keys
	link   string        // the link as last told
}

// messages shows every message that arrived since the last call, in order,
// and lets the subscriber forget them.
func (s *session) messages() {
	msgs := s.sub.Messages(s.seen)
	for _, m := range msgs {
		s.message(m)
	}
	s.seen += len(msgs)
	s.sub.Forget(s.seen)
}

// message shows what one MQTT message changed for HA.
func (s *session) message(m hass.Message) {
	c, err := s.ha.Apply(m)
	if err != nil {
		s.log.Warn("Home Assistant would warn", "topic", m.Topic, "err", err)
	}
	switch {
	case c.Discovered != nil:
		table := deviceTable(c.Discovered, s.scr.width)
		s.scr.event(m.At, "HA", "%s", table[0])
		s.scr.write(table[1:]...)
	case c.Updated != nil:
		s.scr.event(m.At, "HA", "device %q updated: %d entities", c.Updated.Config.Device.Name, len(c.Updated.Config.Components))
	case c.Removed != "":
		s.scr.event(m.At, "HA", "device %q removed", c.Removed)
	}
	for _, d := range c.Availability {
		word := "unavailable"
		if s.ha.Available(d) {
			word = "available"
		}
		s.scr.event(m.At, "HA", "%s: %s", d.Config.Device.Name, word)
	}
	if d := c.State; d != nil {
		s.state(d, m.At)
	}
}

func (s *session) state(d *hass.Device, at time.Time) {
	if _, ok := d.Config.Components[keyLinkState]; ok {
		if link := linkSummary(s.ha, d, at); link != s.link {
			s.link = link
			s.scr.event(at, "HA", "link %s", link)
		}
		return
	}
	if _, ok := d.Config.Components[keyImport]; !ok {
		return
	}
	if !s.scr.tty {
		s.scr.event(at, "HA", "%s", valuesLine(s.ha, d))
	}
	if r, ok := s.cycle.reading(at); ok {
		s.scr.event(at, "demo", "recovered: a reading reached HA %.2f s after the replug; "+
			"em340d would have sat idle for %s s before even retrying (outage %s s)",
			r.took.Seconds(), seconds(r.predecessor), seconds(r.outage))
	}
}

// unplug pulls the adapter out now, unless a cycle is under way; asked says
// whether the user asked for it (and should hear why nothing happens).
func (s *session) unplug(asked bool) error {
	ok, err := s.cycle.unplug()
	if err != nil {
		return err
	}
	now := time.Now()
	if s.every > 0 {
		s.next = now.Add(s.every)
	}
	switch {
	case ok:
		s.scr.event(s.cycle.unpluggedAt, "demo", "unplugged the USB-RS485 adapter; it goes back in after %s s", seconds(s.cycle.outage))
	case asked:
		s.scr.event(now, "demo", "the adapter is out already; wait for the reading after the replug")
	}
	return nil
}

func (s *session) replug() error {
	out, err := s.cycle.replug()
	if err != nil {
		return err
	}
	s.scr.event(s.cycle.pluggedAt, "demo", "plugged the adapter back in after %s s", seconds(out))
	return nil
}

// draw redraws the live panel (on a terminal).
func (s *session) draw(now time.Time) {
	if !s.scr.tty {
		return
	}
	s.scr.setPanel(panel(s.ha, s.cycle, s.next, s.keys, now, s.scr.width))
}

// summary is the closing word on every unplug cycle.
func (s *session) summary(now time.Time) {
	rs := s.cycle.results
	if s.cycle.phase != pluggedIn {
		s.scr.event(now, "demo", "stopped during an unplug cycle (not counted)")
	}
	if len(rs) == 0 {
		return
	}
	var took, pred []string
	for _, r := range rs {
		took = append(took, fmt.Sprintf("%.2f", r.took.Seconds()))
		pred = append(pred, seconds(r.predecessor))
	}
	cycles := "1 unplug"
	if len(rs) > 1 {
		cycles = fmt.Sprintf("%d unplugs", len(rs))
	}
	s.scr.event(now, "demo", "%s: readings reached HA %s s after the replug; em340d would have sat idle for %s s",
		cycles, strings.Join(took, ", "), strings.Join(pred, ", "))
	s.scr.event(now, "demo", "after an outage of a minute or more em340d sits idle for up to %s s (see it with -outage 70s -unplug-every 90s)",
		seconds(baseline.Predecessor.Max))
}

// farewell shows what reaches HA once the bridge has stopped (its "offline"),
// waiting briefly for it.
func (s *session) farewell() {
	deadline := time.NewTimer(farewellWait)
	defer deadline.Stop()
	for {
		select {
		case <-s.sub.After(s.seen):
			s.messages()
			if b := s.ha.Find(keyLinkState); b == nil || !s.ha.Available(b) {
				return
			}
		case <-deadline.C:
			return
		}
	}
}
