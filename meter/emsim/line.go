package emsim

import (
	"slices"
	"sync"
	"time"
)

// line is the RS485 line of a bus for one session on a medium: from a plug
// to the unplug on a pty, or for a gateway's life. One goroutine (the pty's
// reader, or the gateway's) calls hear for every frame on the line; the
// transmitter goroutine puts each meter's reply on the medium when it is due.
// Replies due at once go out one after the other; on a real line two meters
// talking at once would garble each other (which only a late reply or a
// master that does not wait for the answer brings about).
type line struct {
	sims []*Sim
	deaf []time.Time        // per meter: while before this, a late reply is pending; the hearing goroutine's
	send func(reply []byte) // puts a reply on the medium; the transmitter's

	wake   chan struct{} // a reply was scheduled
	done   chan struct{} // closed by end: the session is over
	exited chan struct{} // closed when the transmitter returns

	mu        sync.Mutex // guards what follows
	lastReply time.Time  // when the last reply went out
	pending   []outgoing // by due time
	seq       uint64     // keeps replies due at one instant in order
}

// outgoing is a reply waiting for its time.
type outgoing struct {
	due   time.Time
	seq   uint64
	reply []byte
}

func newLine(sims []*Sim, send func([]byte)) *line {
	l := &line{
		sims: sims, deaf: make([]time.Time, len(sims)), send: send,
		wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
	}
	go l.transmit()
	return l
}

// hear offers a frame that arrived at at to every meter on the line, as a
// real line does: each logs it and decides; the addressed one's reply is
// scheduled. A meter waiting to send a late reply does not hear it (it logs
// it as OutcomeBusy). Only the one goroutine feeding the line calls hear.
func (l *line) hear(frame []byte, at time.Time) {
	l.mu.Lock()
	last := l.lastReply
	l.mu.Unlock()
	for i, s := range l.sims {
		if at.Before(l.deaf[i]) {
			s.busy(frame, at)
			continue
		}
		a := s.respond(frame, at, last)
		if a.reply == nil {
			continue
		}
		if a.deaf {
			l.deaf[i] = a.due
		}
		l.schedule(a.reply, a.due)
	}
}

func (l *line) schedule(reply []byte, due time.Time) {
	l.mu.Lock()
	l.seq++
	o := outgoing{due: due, seq: l.seq, reply: reply}
	i, _ := slices.BinarySearchFunc(l.pending, o, func(a, b outgoing) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return int(a.seq - b.seq)
	})
	l.pending = slices.Insert(l.pending, i, o)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// transmit sends each scheduled reply when it is due, until end.
func (l *line) transmit() {
	defer close(l.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		reply, next := l.due(time.Now())
		if reply != nil {
			l.send(reply)
			continue
		}
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-l.done:
			return
		case <-l.wake:
		case <-fire:
		}
	}
}

// due takes the first reply due by now, noting the time it goes out; else
// the time the next one is due (zero for none).
func (l *line) due(now time.Time) ([]byte, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil, time.Time{}
	}
	if o := l.pending[0]; !o.due.After(now) {
		l.pending = slices.Delete(l.pending, 0, 1)
		l.lastReply = now
		return o.reply, time.Time{}
	}
	return nil, l.pending[0].due
}

// end stops the transmitter; replies not yet sent never are.
func (l *line) end() {
	close(l.done)
	<-l.exited
}
