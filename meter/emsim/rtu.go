package emsim

import "time"

// Modbus RTU framing: CRC-16/Modbus and request assembly from the chunks a pty
// delivers.

// Function codes the meter answers, and exception codes.
const (
	fcReadHolding    byte = 0x03
	fcReadInput      byte = 0x04
	fcWriteSingle    byte = 0x06
	fcDiagnostics    byte = 0x08
	exIllegalFunc    byte = 0x01
	exIllegalAddress byte = 0x02
	exIllegalValue   byte = 0x03
	exSlaveFailure   byte = 0x04
	broadcastAddress byte = 0
	minFrameLen           = 4 // address, function, CRC
	maxFrameLen           = 256
)

// crc16 is CRC-16/Modbus: initial FFFFh, reflected polynomial A001h.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// appendCRC appends the CRC, low byte first as RTU sends it.
func appendCRC(b []byte) []byte {
	c := crc16(b)
	return append(b, byte(c), byte(c>>8))
}

// crcOK checks the trailing CRC of a whole frame.
func crcOK(frame []byte) bool {
	if len(frame) < minFrameLen {
		return false
	}
	n := len(frame) - 2
	c := crc16(frame[:n])
	return frame[n] == byte(c) && frame[n+1] == byte(c>>8)
}

// requestLength is the length of the request frame starting at b, by function
// code: 0 when more bytes are needed to tell, -1 for a function whose request
// length is unknown (the frame then ends with line silence).
func requestLength(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case 0x01, 0x02, fcReadHolding, fcReadInput, 0x05, fcWriteSingle, fcDiagnostics:
		return 8
	case 0x07, 0x0B, 0x0C, 0x11:
		return 4
	case 0x0F, 0x10: // write multiple: byte count at offset 6
		if len(b) < 7 {
			return 0
		}
		return 9 + int(b[6])
	case 0x16:
		return 10
	case 0x17: // read/write multiple: byte count at offset 10
		if len(b) < 11 {
			return 0
		}
		return 13 + int(b[10])
	case 0x18:
		return 6
	}
	return -1
}

// framer assembles request frames from the byte stream. A frame of known
// length is taken as soon as it is complete and its CRC checks; a bad CRC
// drops one byte and looks for a frame start further on (resync).
type framer struct {
	buf     []byte
	dropped int // bytes discarded while resynchronising, for the log
}

func (f *framer) feed(p []byte) {
	f.buf = append(f.buf, p...)
	if len(f.buf) > 4*maxFrameLen { // never grow without bound on a noisy line
		f.dropped += len(f.buf) - maxFrameLen
		f.buf = append(f.buf[:0], f.buf[len(f.buf)-maxFrameLen:]...)
	}
}

// pending reports bytes waiting for the rest of their frame or for silence.
func (f *framer) pending() bool { return len(f.buf) > 0 }

// next returns the next complete frame of known length.
func (f *framer) next() ([]byte, bool) {
	for len(f.buf) >= minFrameLen {
		n := requestLength(f.buf)
		known := n >= minFrameLen && n <= maxFrameLen
		switch {
		case n == 0, known && len(f.buf) < n:
			return nil, false // need more bytes
		case known && crcOK(f.buf[:n]):
			return f.take(0, n), true
		}
		// The head starts no frame to take now: a whole frame further on?
		if i, m, ok := f.find(); ok {
			f.dropped += i
			return f.take(i, m), true
		}
		if n < 0 {
			return nil, false // perhaps a frame of unknown length: silence decides
		}
		f.drop(1) // bad CRC or impossible length: look for a frame start further on
	}
	return nil, false
}

// silence is called when the line has been quiet for a frame gap. The whole
// buffer is a frame if its CRC checks (a function of unknown length);
// otherwise the first whole frame of known length further on is taken and
// what precedes it dropped; otherwise everything is dropped.
func (f *framer) silence() ([]byte, bool) {
	if crcOK(f.buf) {
		return f.take(0, len(f.buf)), true
	}
	if i, m, ok := f.find(); ok {
		f.dropped += i
		return f.take(i, m), true
	}
	f.drop(len(f.buf))
	return nil, false
}

// find looks past the first byte for a complete frame of known length with a
// good CRC: its offset and length.
func (f *framer) find() (int, int, bool) {
	for i := 1; i+minFrameLen <= len(f.buf); i++ {
		m := requestLength(f.buf[i:])
		if m >= minFrameLen && m <= maxFrameLen && i+m <= len(f.buf) && crcOK(f.buf[i:i+m]) {
			return i, m, true
		}
	}
	return 0, 0, false
}

func (f *framer) take(at, n int) []byte {
	frame := append([]byte(nil), f.buf[at:at+n]...)
	f.buf = append(f.buf[:0], f.buf[at+n:]...)
	return frame
}

func (f *framer) drop(n int) {
	f.dropped += n
	f.buf = append(f.buf[:0], f.buf[n:]...)
}

// exception is the PDU of an exception reply.
func exception(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// wireTime is how long n bytes take on the line at 10 bits a byte (8N1).
func wireTime(n, baud int) time.Duration {
	if baud <= 0 {
		return 0
	}
	return time.Duration(10*n) * time.Second / time.Duration(baud)
}
