// Package baseline computes what the bridge's measured times are compared
// against: the least time Modbus requests can take on the RS485 line, and the
// wait of em340d, the Python predecessor the bridge replaces.
package baseline

import (
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// The line's arithmetic, from the EM340 protocol document: 8N1 is 10 bits a
// byte; a read request is 8 bytes, its reply 5+2n, an exception reply 5; the
// master leaves at least 40 ms after a reply before the next query.
const (
	BitsPerByte    = 10
	RequestBytes   = 8
	ExceptionBytes = 5
	MeterGap       = 40 * time.Millisecond
	replyOverhead  = 5 // address, function, byte count, CRC
	echoReplyBytes = 8 // functions 06 and 08 echo the request
	fcReadHolding  = 0x03
	fcReadInput    = 0x04
)

// WireTime is how long n bytes take on the line at baud.
func WireTime(n, baud int) time.Duration {
	return time.Duration(BitsPerByte*n) * time.Second / time.Duration(baud)
}

// ReplyBytes is the reply to a read of words registers.
func ReplyBytes(words uint16) int { return replyOverhead + 2*int(words) }

// ReadTime is one read's request and reply on the line plus the meter's
// answer latency.
func ReadTime(words uint16, baud int, latency time.Duration) time.Duration {
	return WireTime(RequestBytes+ReplyBytes(words), baud) + latency
}

// Blocks is the least time these reads can take, from the first query on an
// idle line to the last reply: every frame at baud, the meter's latency per
// request and gap between a reply and the next query.
func Blocks(blocks []meter.Block, baud int, latency, gap time.Duration) time.Duration {
	var d time.Duration
	for i, b := range blocks {
		if i > 0 {
			d += gap
		}
		d += ReadTime(b.Count, baud, latency)
	}
	return d
}

// Requests is the same least time for requests the simulator logged, each
// with the reply it actually got (an exception is 5 bytes), and MeterGap
// between them.
func Requests(reqs []emsim.Request, baud int, latency time.Duration) time.Duration {
	var d time.Duration
	for i, r := range reqs {
		if i > 0 {
			d += MeterGap
		}
		reply := echoReplyBytes
		switch {
		case r.Outcome == emsim.OutcomeException:
			reply = ExceptionBytes
		case r.Function == fcReadHolding || r.Function == fcReadInput:
			reply = ReplyBytes(r.Count)
		}
		d += WireTime(RequestBytes+reply, baud) + latency
	}
	return d
}
