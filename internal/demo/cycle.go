package demo

import (
	"fmt"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
)

// adapter is the simulated USB-RS485 adapter (emsim.Sim).
type adapter interface {
	Unplug() error
	Replug() error
}

type plugPhase int

const (
	pluggedIn  plugPhase = iota
	unplugged            // waiting for the replug timer
	recovering           // plugged back in, waiting for the first reading at HA
)

// cycle pulls the adapter out, plugs it back in after outage, and times how
// long HA waits for a reading from the replug on.
type cycle struct {
	adapter adapter
	outage  time.Duration

	phase                  plugPhase
	unpluggedAt, pluggedAt time.Time
	timer                  *time.Timer // fires when the adapter goes back in
	results                []recovery
}

// recovery is one measured unplug cycle.
type recovery struct {
	outage      time.Duration // unplugged → plugged back in
	took        time.Duration // plugged back in → first reading at HA
	predecessor time.Duration // what the predecessor would have waited after the replug
}

// unplug pulls the adapter out, unless a cycle is under way (false). The
// outage counts from when the adapter is gone.
func (c *cycle) unplug() (bool, error) {
	if c.phase != pluggedIn {
		return false, nil
	}
	if err := c.adapter.Unplug(); err != nil {
		return false, fmt.Errorf("unplug: %w", err)
	}
	c.phase, c.unpluggedAt = unplugged, time.Now()
	c.timer = time.NewTimer(c.outage)
	return true, nil
}

// replugDue fires when the adapter should go back in; nil (never) otherwise.
func (c *cycle) replugDue() <-chan time.Time {
	if c.phase != unplugged {
		return nil
	}
	return c.timer.C
}

// replug plugs the adapter back in and returns how long it was out. The
// recovery counts from when the adapter is back.
func (c *cycle) replug() (time.Duration, error) {
	if c.phase != unplugged {
		return 0, nil
	}
	if err := c.adapter.Replug(); err != nil {
		return 0, fmt.Errorf("replug: %w", err)
	}
	c.phase, c.pluggedAt = recovering, time.Now()
	return c.pluggedAt.Sub(c.unpluggedAt), nil
}

// reading is told when a meter reading arrives at HA. The first one after a
// replug ends the cycle and returns its measurement.
func (c *cycle) reading(at time.Time) (recovery, bool) {
	if c.phase != recovering || at.Before(c.pluggedAt) {
		return recovery{}, false
	}
	outage := c.pluggedAt.Sub(c.unpluggedAt)
	r := recovery{outage: outage, took: at.Sub(c.pluggedAt), predecessor: baseline.Predecessor.WaitAfterReplug(outage)}
	c.results = append(c.results, r)
	c.phase = pluggedIn
	return r, true
}

// stop drops a pending replug timer.
func (c *cycle) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
}
