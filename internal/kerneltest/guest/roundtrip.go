package main

import (
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
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
	fd, err := unix.Open(node, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	if err := rawLine(fd, baud); err != nil {
		return 0, 0, err
	}
	// Unit 1, read 7 registers at 5000h, CRC 0815h (low byte first); the
	// simulator answers no frame with a wrong CRC, so a typo here fails loudly.
	req := []byte{0x01, 0x03, 0x50, 0x00, 0x00, 0x07, 0x15, 0x08}
	const replyLen = 3 + 14 + 2
	wire := time.Duration(10*(len(req)+replyLen)) * time.Second / time.Duration(baud)
	var samples []time.Duration
	buf := make([]byte, 64)
	for range n {
		time.Sleep(40 * time.Millisecond)
		if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
			return 0, 0, fmt.Errorf("flush: %w", err)
		}
		sent := time.Now()
		if _, err := unix.Write(fd, req); err != nil {
			return 0, 0, fmt.Errorf("write: %w", err)
		}
		for got := 0; got < replyLen; {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, err := unix.Poll(fds, 1000); err != nil && err != unix.EINTR {
				return 0, 0, fmt.Errorf("poll: %w", err)
			} else if k == 0 {
				return 0, 0, fmt.Errorf("no reply within 1 s (%d of %d bytes)", got, replyLen)
			}
			m, err := unix.Read(fd, buf[got:replyLen])
			if err != nil {
				return 0, 0, fmt.Errorf("read: %w", err)
			}
			got += m
		}
		if buf[0] != 1 || buf[1] != 0x03 || buf[2] != 14 {
			return 0, 0, fmt.Errorf("bad reply % x", buf[:replyLen])
		}
		samples = append(samples, time.Since(sent)-wire)
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)-1], nil
}

// rawLine sets fd to raw 8N1 at baud, blocking reads of at least one byte.
func rawLine(fd, baud int) error {
	speeds := map[int]uint32{9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 115200: unix.B115200}
	speed, ok := speeds[baud]
	if !ok {
		return fmt.Errorf("no termios speed for %d baud", baud)
	}
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
