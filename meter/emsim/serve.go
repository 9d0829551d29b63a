package emsim

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"time"
)

const (
	frameGap     = 20 * time.Millisecond // line silence that ends a frame of unknown length
	writeTimeout = time.Second           // a reply nobody reads must not block the meter forever
	ioRetry      = 10 * time.Millisecond // pause after an unexpected read error
)

// conn is one plugged-in period: a pty, the bus's line on it and the
// goroutine reading it.
type conn struct {
	pty    *pty
	line   *line
	exited chan struct{} // closed when serve returns
	rdev   uint64        // the pty slave's device number (tree mode); plugMu
}

// serve reads requests from the master and puts them on the line until the
// pty is closed.
func (b *Bus) serve(c *conn) {
	defer close(c.exited)
	readFrames(c.pty.master, c.line.done, b.log, func(err error) bool { return errors.Is(err, os.ErrClosed) }, c.line.hear)
}

// write puts a reply on the pty; the line's transmitter calls it.
func (c *conn) write(reply []byte) {
	_ = c.pty.master.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = c.pty.master.Write(reply) // closed (unplugged) or nobody reading: the reply is lost, as on a line
}

// frameReader is where RTU frames come from: a pty master or a TCP connection.
type frameReader interface {
	Read(p []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// readFrames reads r until an error that fatal says is for good (other errors
// are logged and retried after a pause, unless stop is closed), and calls
// hear with each frame and the time it had arrived. A frame of unknown length
// ends with a frame gap of silence.
func readFrames(r frameReader, stop <-chan struct{}, log *slog.Logger, fatal func(error) bool, hear func([]byte, time.Time)) {
	var fr framer
	buf := make([]byte, maxFrameLen)
	for {
		var deadline time.Time // none: wait for the next request
		if fr.pending() {
			deadline = time.Now().Add(frameGap)
		}
		_ = r.SetReadDeadline(deadline)
		n, err := r.Read(buf)
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
			hear(frame, at)
		}
		if fr.dropped > 0 {
			log.Debug("discarded bytes that form no frame", "bytes", fr.dropped)
			fr.dropped = 0
		}
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		case fatal(err):
			return
		default:
			log.Warn("read failed", "err", err)
			select {
			case <-stop:
				return
			case <-time.After(ioRetry):
			}
		}
	}
}

// busy logs a query the meter did not hear.
func (s *Sim) busy(frame []byte, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := parseRequest(frame, at)
	req.Outcome = OutcomeBusy
	s.record(req)
}

// answer is what the meter does with one frame.
type answer struct {
	reply []byte    // nil: no reply
	due   time.Time // when the reply goes out
	deaf  bool      // a late reply: queries arriving until due go unheard
}

// respond decides what the meter does with a frame and logs the request.
func (s *Sim) respond(frame []byte, at, lastReply time.Time) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := parseRequest(frame, at)
	defer func() { s.record(req) }()
	slave, fc := frame[0], frame[1]
	switch {
	case s.faults.mute:
		req.Outcome = OutcomeMuted
		return answer{}
	case at.Before(s.faults.offUntil):
		req.Outcome = OutcomePowerOff
		return answer{}
	case slave != broadcastAddress && uint16(slave) != s.words[addrSlaveAddress]:
		req.Outcome = OutcomeOtherSlave
		return answer{}
	case s.opts.IgnoreWithin > 0 && !lastReply.IsZero() && at.Sub(lastReply) < s.opts.IgnoreWithin:
		req.Outcome = OutcomeIgnored
		return answer{}
	case slave == broadcastAddress:
		if fc == fcWriteSingle && len(frame) == 8 {
			s.write(req.Addr, req.Value)
		}
		req.Outcome = OutcomeBroadcast
		return answer{}
	}

	var pdu []byte
	if s.faults.exceptions > 0 {
		s.faults.exceptions--
		pdu = exception(fc, s.faults.exception)
		req.Outcome = OutcomeException
	} else {
		pdu, req.Outcome = s.execute(frame, at)
	}
	if pdu[0]&0x80 != 0 {
		req.Outcome, req.Exception = OutcomeException, pdu[1]
	}
	reply := appendCRC(append([]byte{slave}, pdu...))

	delay := s.faults.slow
	late := s.faults.late > 0
	if late {
		s.faults.late--
		delay = s.faults.lateDelay
		req.Outcome = OutcomeLate
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

	due := at.Add(delay)
	if s.opts.WireTiming {
		due = due.Add(wireTime(len(frame)+len(reply), s.baud) + s.opts.Latency)
	}
	return answer{reply: reply, due: due, deaf: late}
}

// execute runs a request addressed to this meter and returns the reply PDU
// and what faults did to it (OutcomeReply for nothing).
func (s *Sim) execute(frame []byte, at time.Time) ([]byte, Outcome) {
	fc := frame[1]
	if len(frame) != 8 { // every function the meter knows has an 8-byte request
		return exception(fc, exIllegalFunc), OutcomeReply
	}
	a, b := binary.BigEndian.Uint16(frame[2:4]), binary.BigEndian.Uint16(frame[4:6])
	switch fc {
	case fcReadHolding, fcReadInput:
		words, ex, outcome := s.read(a, b, at)
		if ex != 0 {
			return exception(fc, ex), OutcomeException
		}
		pdu := make([]byte, 2, 2+2*len(words))
		pdu[0], pdu[1] = fc, byte(2*len(words))
		for _, w := range words {
			pdu = binary.BigEndian.AppendUint16(pdu, w)
		}
		return pdu, outcome
	case fcWriteSingle:
		if ex := s.write(a, b); ex != 0 {
			return exception(fc, ex), OutcomeException
		}
		return append([]byte(nil), frame[1:6]...), OutcomeReply // echo
	case fcDiagnostics:
		if a != 0 { // only sub-function 0, return query data
			return exception(fc, exIllegalFunc), OutcomeException
		}
		return append([]byte(nil), frame[1:6]...), OutcomeReply // echo
	}
	return exception(fc, exIllegalFunc), OutcomeException
}
