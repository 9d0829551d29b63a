package link

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An FTDI chip (FT232R, FT232B and kin, in most USB-RS485 adapters) sends
// what it has received to the host when 62 bytes have come or when its
// latency timer runs out, 16 ms out of reset (FTDI AN232B-04), and Linux's
// ftdi_sio keeps that. The tail of every Modbus reply waits for the timer: up
// to 16 ms a request, more than the whole excess over the wire the bridge
// allows itself. The driver's low-latency flag sets the timer to 1 ms, and
// it needs no privilege (ASYNC_LOW_LATENCY is in ASYNC_USR_MASK): a bridge in
// group dialout sets it as root would. Any value but 1 is asked to change (qemu's
// emulated chip reports 0). Other adapters (CH340, CP210x, PL2303, cdc-acm)
// have no such timer and are left alone.

// asyncLowLatency is ASYNC_LOW_LATENCY of <linux/tty_flags.h> (bit 13).
const asyncLowLatency = 1 << 13

// serialStruct is struct serial_struct of <linux/serial.h>, whose layout the
// Go types reproduce on 32- and 64-bit (unsigned long and pointers as uintptr).
type serialStruct struct {
	Type          int32
	Line          int32
	Port          uint32
	IRQ           int32
	Flags         int32
	XmitFIFOSize  int32
	CustomDivisor int32
	BaudBase      int32
	CloseDelay    uint16
	IOType        int8
	ReservedChar  int8
	Hub6          int32
	ClosingWait   uint16
	ClosingWait2  uint16
	IOMemBase     uintptr
	IOMemRegShift uint16
	PortHigh      uint32
	IOMapBase     uintptr
}

// ftdiLatencyTimer reads the latency timer of the tty node at path, in ms,
// as ftdi_sio shows it in sysfs; ok is false unless ftdi_sio drives the port.
// The node is found by its device number, so a renamed node in a container is
// found too. The attribute comes a moment after the node (the driver core
// adds it once the probe that made the node has returned): timer "" then,
// which is not low latency either, as a new port never is.
func ftdiLatencyTimer(sys sysfs, path string) (timer string, ok bool) {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return "", false
	}
	dev := filepath.Join(sys.rootDir(), "dev", "char", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "device")
	driver, err := os.Readlink(filepath.Join(dev, "driver"))
	if err != nil || filepath.Base(driver) != "ftdi_sio" {
		return "", false
	}
	timer, _ = attr(dev, "latency_timer")
	return timer, true
}

// setLowLatency sets the driver's low-latency flag on the open tty fd,
// keeping every other field of its serial settings as the driver gave them
// (a change to those would need CAP_SYS_ADMIN).
func setLowLatency(fd int) error {
	var ss serialStruct
	if err := ioctlSerial(fd, unix.TIOCGSERIAL, &ss); err != nil {
		return fmt.Errorf("TIOCGSERIAL: %w", err)
	}
	if ss.Flags&asyncLowLatency != 0 {
		return nil
	}
	ss.Flags |= asyncLowLatency
	if err := ioctlSerial(fd, unix.TIOCSSERIAL, &ss); err != nil {
		return fmt.Errorf("TIOCSSERIAL: %w", err)
	}
	return nil
}

func ioctlSerial(fd int, req uint, ss *serialStruct) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(ss))); errno != 0 {
		return errno
	}
	return nil
}
