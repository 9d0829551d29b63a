package demo

import (
	"fmt"
	"strings"
	"time"
)

// session is the running demo as the user follows it: what HA knows, the
// unplug cycle, and the screen both are told on. Only the demo's loop uses it.
type session struct {
	scr    *screen
	ha     *hass
	cycle  *cycle
	every  time.Duration // automatic unplugs; 0 = only on a key press
	next   time.Time     // the next automatic unplug; zero = none
	retime func()        // restarts the automatic unplugs' clock; nil without them
	keys   bool          // the user can press keys
	link   string        // the link as last told
}

// message shows what one MQTT message changed for HA.
func (s *session) message(m message) {
	c := s.ha.apply(m)
	switch {
	case c.discovered != nil:
		table := deviceTable(c.discovered, s.scr.width)
		s.scr.event(m.at, "HA", "%s", table[0])
		s.scr.write(table[1:]...)
	case c.updated != nil:
		s.scr.event(m.at, "HA", "device %q updated: %d entities", c.updated.config.Device.Name, len(c.updated.config.Components))
	case c.removed != "":
		s.scr.event(m.at, "HA", "device %q removed", c.removed)
	}
	for _, d := range c.avail {
		word := "unavailable"
		if s.ha.isAvailable(d) {
			word = "available"
		}
		s.scr.event(m.at, "HA", "%s: %s", d.config.Device.Name, word)
	}
	if d := c.state; d != nil {
		s.state(d, m.at)
	}
}

func (s *session) state(d *device, at time.Time) {
	if _, ok := d.config.Components[keyLinkState]; ok {
		if link := linkSummary(s.ha, d); link != s.link {
			s.link = link
			s.scr.event(at, "HA", "link %s", link)
		}
		return
	}
	if _, ok := d.config.Components[keyImport]; !ok {
		return
	}
	if !s.scr.tty {
		s.scr.event(at, "HA", "%s", valuesLine(d))
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
		seconds(predecessor().Max))
}

// farewell shows what reaches HA once the bridge has stopped (its "offline"),
// waiting briefly for it.
func (s *session) farewell(messages <-chan message) {
	deadline := time.NewTimer(farewellWait)
	defer deadline.Stop()
	for {
		select {
		case m := <-messages:
			s.message(m)
			if b := s.ha.find(keyLinkState); b == nil || !s.ha.isAvailable(b) {
				return
			}
		case <-deadline.C:
			return
		}
	}
}
