package emsim

import (
	"encoding/binary"
	"errors"
	"os"
	"time"
)

const (
	frameGap     = 20 * time.Millisecond // line silence that ends a frame of unknown length
	writeTimeout = time.Second           // a reply nobody reads must not block the meter forever
	ioRetry      = 10 * time.Millisecond // pause after an unexpected read error
)

// conn is one plugged-in period: a pty and the goroutine serving it.
type conn struct {
	pty       *pty
	done      chan struct{} // closed by unplug: abandon any reply being delayed
	exited    chan struct{} // closed when serve returns
	lastReply time.Time     // end of the previous reply; serve goroutine only
}

// serve reads requests from the master and answers them until the pty is closed.
func (s *Sim) serve(c *conn) {
	defer close(c.exited)
	var fr framer
	buf := make([]byte, maxFrameLen)
	for {
		var deadline time.Time // none: wait for the next request
		if fr.pending() {
			deadline = time.Now().Add(frameGap)
		}
		_ = c.pty.master.SetReadDeadline(deadline)
		n, err := c.pty.master.Read(buf)
		at := time.Now()
		fr.feed(buf[:n])
		for {
			frame, ok := fr.next()
			if !ok && errors.Is(err, os.ErrDeadlineExceeded) {
				frame, ok = fr.silence()
			}
			if !ok {
				break
			}
			if !s.handle(c, frame, at) {
				return
			}
		}
		if fr.dropped > 0 {
			s.log.Debug("discarded bytes that form no frame", "bytes", fr.dropped)
			fr.dropped = 0
		}
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, os.ErrClosed):
			return // unplugged
		default:
			s.log.Warn("pty read failed", "err", err)
			select {
			case <-c.done:
				return
			case <-time.After(ioRetry):
			}
		}
	}
}

// handle answers one frame; false when the connection went away meanwhile.
func (s *Sim) handle(c *conn, frame []byte, at time.Time) bool {
	reply, wait := s.respond(frame, at, c.lastReply)
	if reply == nil {
		return true
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-c.done:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	_ = c.pty.master.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.pty.master.Write(reply); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return false
		}
		s.log.Warn("pty write failed", "err", err)
	}
	c.lastReply = time.Now()
	return true
}

// respond decides what the meter does with a frame: the reply bytes (nil for
// none) and how long after now to send them. It logs the request.
func (s *Sim) respond(frame []byte, at, lastReply time.Time) ([]byte, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := parseRequest(frame, at)
	defer func() { s.record(req) }()
	slave, fc := frame[0], frame[1]
	switch {
	case s.faults.mute:
		req.Outcome = OutcomeMuted
		return nil, 0
	case slave != broadcastAddress && uint16(slave) != s.words[addrSlaveAddress]:
		req.Outcome = OutcomeOtherSlave
		return nil, 0
	case s.opts.IgnoreWithin > 0 && !lastReply.IsZero() && at.Sub(lastReply) < s.opts.IgnoreWithin:
		req.Outcome = OutcomeIgnored
		return nil, 0
	case slave == broadcastAddress:
		if fc == fcWriteSingle && len(frame) == 8 {
			s.write(req.Addr, req.Value)
		}
		req.Outcome = OutcomeBroadcast
		return nil, 0
	}

	var pdu []byte
	if s.faults.exceptions > 0 {
		s.faults.exceptions--
		pdu = exception(fc, s.faults.exception)
	} else {
		pdu = s.execute(frame, at)
	}
	reply := appendCRC(append([]byte{slave}, pdu...))
	req.Outcome = OutcomeReply
	if pdu[0]&0x80 != 0 {
		req.Outcome, req.Exception = OutcomeException, pdu[1]
	}
	switch {
	case s.faults.garbage > 0:
		s.faults.garbage--
		for i := range reply {
			reply[i] = byte(s.model.rng.Uint32())
		}
		req.Outcome = OutcomeGarbage
	case s.faults.badCRC > 0:
		s.faults.badCRC--
		reply[len(reply)-1] ^= 0xA5
		req.Outcome = OutcomeBadCRC
	}

	due := at.Add(s.faults.slow)
	if s.opts.WireTiming {
		due = due.Add(wireTime(len(frame)+len(reply), s.baud) + s.opts.Latency)
	}
	return reply, time.Until(due)
}

// execute runs a request addressed to this meter and returns the reply PDU.
func (s *Sim) execute(frame []byte, at time.Time) []byte {
	fc := frame[1]
	if len(frame) != 8 { // every function the meter knows has an 8-byte request
		return exception(fc, exIllegalFunc)
	}
	a, b := binary.BigEndian.Uint16(frame[2:4]), binary.BigEndian.Uint16(frame[4:6])
	switch fc {
	case fcReadHolding, fcReadInput:
		words, ex := s.read(a, b, at)
		if ex != 0 {
			return exception(fc, ex)
		}
		pdu := make([]byte, 2, 2+2*len(words))
		pdu[0], pdu[1] = fc, byte(2*len(words))
		for _, w := range words {
			pdu = binary.BigEndian.AppendUint16(pdu, w)
		}
		return pdu
	case fcWriteSingle:
		if ex := s.write(a, b); ex != 0 {
			return exception(fc, ex)
		}
		return append([]byte(nil), frame[1:6]...) // echo
	case fcDiagnostics:
		if a != 0 { // only sub-function 0, return query data
			return exception(fc, exIllegalFunc)
		}
		return append([]byte(nil), frame[1:6]...) // echo
	}
	return exception(fc, exIllegalFunc)
}
