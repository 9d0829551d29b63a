package emsim

import (
	"encoding/binary"
	"errors"
)

// Modbus TCP framing (MBAP): a 7-byte header — transaction id (echoed in the
// reply), protocol id (0 for Modbus), length (of what follows it: the unit id
// and the PDU), unit id — then the PDU, without a CRC.

const (
	mbapHeaderLen = 7
	mbapMaxLength = 1 + 253 // the length field's largest value: unit id and the largest PDU
	mbapMaxADU    = 6 + mbapMaxLength
)

var (
	// errMBAPLength is a length field no ADU can have: the stream cannot be
	// framed any further, and a gateway drops the connection.
	errMBAPLength = errors.New("MBAP length out of range")
	// errMBAPProtocol is an ADU of another protocol than Modbus: skipped.
	errMBAPProtocol = errors.New("MBAP protocol id not 0")
)

// mbapADU is one request or reply in MBAP framing.
type mbapADU struct {
	txid uint16
	unit byte
	pdu  []byte // function code and data
}

// nextMBAP takes the first ADU off the head of b and says how many bytes it
// took: 0 (and no error) while b holds only part of one. An ADU of another
// protocol is taken with errMBAPProtocol; errMBAPLength takes nothing.
func nextMBAP(b []byte) (mbapADU, int, error) {
	if len(b) < mbapHeaderLen {
		return mbapADU{}, 0, nil
	}
	length := int(binary.BigEndian.Uint16(b[4:6]))
	if length < 2 || length > mbapMaxLength { // a unit id and a function code at least
		return mbapADU{}, 0, errMBAPLength
	}
	n := 6 + length
	if len(b) < n {
		return mbapADU{}, 0, nil
	}
	if binary.BigEndian.Uint16(b[2:4]) != 0 {
		return mbapADU{}, n, errMBAPProtocol
	}
	return mbapADU{txid: binary.BigEndian.Uint16(b[0:2]), unit: b[6], pdu: append([]byte(nil), b[7:n]...)}, n, nil
}

// appendMBAP appends the ADU in MBAP framing.
func appendMBAP(dst []byte, a mbapADU) []byte {
	dst = binary.BigEndian.AppendUint16(dst, a.txid)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(1+len(a.pdu)))
	dst = append(dst, a.unit)
	return append(dst, a.pdu...)
}
