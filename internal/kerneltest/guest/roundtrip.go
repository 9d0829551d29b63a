package main

import (
	"fmt"
	"slices"
	"time"

	"go.bug.st/serial"
)

// adapterRoundTrip measures what one Modbus request costs through an
// emulated adapter beyond its bytes on the wire: n reads of the serial
// number (8 bytes out, 19 back), each 40 ms after the last reply as the meter
// wants, on node at 115200 baud. The simulator answers at once, so what is
// left is the adapter's own latency (guest driver, emulated USB controller
// and device, qemu's chardev): the meter latency to assume for the rig's
// wire minimum, as a real meter's and adapter's would be for a real line.
// It returns the median and the largest.
func adapterRoundTrip(node string, baud, n int) (median, worst time.Duration, err error) {
	// go.bug.st/serial, as the bridge opens its port: the same reads.
	sp, err := serial.Open(node, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return 0, 0, err
	}
	defer sp.Close()
	if err := sp.SetReadTimeout(time.Second); err != nil {
		return 0, 0, err
	}
	// Unit 1, read 7 registers at 5000h, CRC 0815h (low byte first); the
	// simulator answers no frame with a wrong CRC, so a typo here fails loudly.
	req := []byte{0x01, 0x03, 0x50, 0x00, 0x00, 0x07, 0x15, 0x08}
	const replyLen = 3 + 14 + 2
	wire := time.Duration(10*(len(req)+replyLen)) * time.Second / time.Duration(baud)
	var samples []time.Duration
	buf := make([]byte, replyLen)
	for range n {
		time.Sleep(40 * time.Millisecond)
		if err := sp.ResetInputBuffer(); err != nil {
			return 0, 0, fmt.Errorf("flush: %w", err)
		}
		sent := time.Now()
		if _, err := sp.Write(req); err != nil {
			return 0, 0, fmt.Errorf("write: %w", err)
		}
		for got := 0; got < replyLen; {
			m, err := sp.Read(buf[got:])
			if err != nil {
				return 0, 0, fmt.Errorf("read: %w", err)
			}
			if m == 0 {
				return 0, 0, fmt.Errorf("no reply within 1 s (%d of %d bytes)", got, replyLen)
			}
			got += m
		}
		if buf[0] != 1 || buf[1] != 0x03 || buf[2] != 14 {
			return 0, 0, fmt.Errorf("bad reply % x", buf)
		}
		samples = append(samples, time.Since(sent)-wire)
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)-1], nil
}
