package emsim

import (
	"encoding/binary"
	"fmt"
	"time"
)

// maxRequests bounds the request log of a long-running simulator; the oldest
// half is dropped when it fills.
const maxRequests = 10000

// Outcome is what the meter did with a request.
type Outcome uint8

const (
	OutcomeReply       Outcome = iota + 1 // answered normally
	OutcomeException                      // answered with an exception (Request.Exception)
	OutcomeBadCRC                         // answered, with a corrupted CRC (fault)
	OutcomeGarbage                        // answered with random bytes (fault)
	OutcomeBroadcast                      // address 0: a write applied, no reply
	OutcomeOtherSlave                     // addressed to another slave id: no reply
	OutcomeMuted                          // the meter is muted (fault): no reply
	OutcomeIgnored                        // arrived within IgnoreWithin of the previous reply: no reply
	OutcomeLowEnergy                      // answered, every energy total in it reading a low value (LowEnergy)
	OutcomeZeroEnergy                     // answered, every energy total in it reading 0 (GlitchEnergy, PowerCycle)
	OutcomeLate                           // answered, after the delay of LateNext
	OutcomeWrongLength                    // answered with more or fewer registers than asked (WrongLengthNext)
	OutcomeShifted                        // answered with registers from another address (ShiftNext)
	OutcomePowerOff                       // the meter is off during PowerCycle: no reply
	OutcomeBusy                           // arrived while a late reply was pending: no reply
)

// When several faults spoil one reply, its Outcome names the one that comes
// last in this order: low or zero energy, shifted, wrong length, exception,
// late, bad CRC, garbage. Each fault's count still goes down, except that a
// reply replaced by garbage leaves the bad-CRC count alone.

func (o Outcome) String() string {
	switch o {
	case OutcomeReply:
		return "reply"
	case OutcomeException:
		return "exception"
	case OutcomeBadCRC:
		return "bad-crc"
	case OutcomeGarbage:
		return "garbage"
	case OutcomeBroadcast:
		return "broadcast"
	case OutcomeOtherSlave:
		return "other-slave"
	case OutcomeMuted:
		return "muted"
	case OutcomeIgnored:
		return "ignored"
	case OutcomeLowEnergy:
		return "low-energy"
	case OutcomeZeroEnergy:
		return "zero-energy"
	case OutcomeLate:
		return "late"
	case OutcomeWrongLength:
		return "wrong-length"
	case OutcomeShifted:
		return "shifted"
	case OutcomePowerOff:
		return "power-off"
	case OutcomeBusy:
		return "busy"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Request is one well-formed frame (CRC correct) the simulator received.
type Request struct {
	Time      time.Time // when the whole frame had arrived
	Slave     byte      // address byte (0 = broadcast)
	Function  byte      // function code
	Addr      uint16    // first register (03, 04, 06) or sub-function (08)
	Count     uint16    // registers asked for (03, 04); 1 for 06
	Value     uint16    // value written (06) or data echoed (08)
	Outcome   Outcome   //
	Exception byte      // exception code when Outcome is OutcomeException
}

// Answered reports whether a reply went out on the line (possibly spoiled by a fault).
func (r Request) Answered() bool {
	switch r.Outcome {
	case OutcomeReply, OutcomeException, OutcomeBadCRC, OutcomeGarbage, OutcomeLowEnergy, OutcomeZeroEnergy,
		OutcomeLate, OutcomeWrongLength, OutcomeShifted:
		return true
	}
	return false
}

// parseRequest fills what the frame says; the outcome is decided later.
func parseRequest(frame []byte, at time.Time) Request {
	r := Request{Time: at, Slave: frame[0], Function: frame[1]}
	if len(frame) != 8 {
		return r
	}
	a, b := binary.BigEndian.Uint16(frame[2:4]), binary.BigEndian.Uint16(frame[4:6])
	switch r.Function {
	case fcReadHolding, fcReadInput:
		r.Addr, r.Count = a, b
	case fcWriteSingle:
		r.Addr, r.Count, r.Value = a, 1, b
	case fcDiagnostics:
		r.Addr, r.Value = a, b
	}
	return r
}

// record appends to the log; s.mu is held.
func (s *Sim) record(r Request) {
	if len(s.requests) >= maxRequests {
		s.requests = append(s.requests[:0], s.requests[maxRequests/2:]...)
	}
	s.requests = append(s.requests, r)
	s.log.Debug("request", "slave", r.Slave, "function", r.Function, "addr", fmt.Sprintf("%04Xh", r.Addr),
		"count", r.Count, "outcome", r.Outcome.String(), "exception", r.Exception)
}

// Requests returns a copy of the request log, oldest first.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests empties the request log.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}
