package link

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"
)

// port is the open serial line to the meter; *modbus.ModbusClient is one.
type port interface {
	ReadRegisters(addr, quantity uint16, regType modbus.RegType) ([]uint16, error)
	Close() error
}

// Serial is how the line is set up.
type Serial struct {
	Baud     int
	Parity   string // none, even, odd
	StopBits int
	Address  uint8         // Modbus slave address, 1–247
	Timeout  time.Duration // per request
}

// openModbus opens path as an RTU client. It is the seam tests replace to make
// an open fail the way a real adapter can (EACCES for a user not in dialout).
func openModbus(path string, s Serial, logger *slog.Logger) (port, error) {
	parity := map[string]uint{"even": modbus.PARITY_EVEN, "odd": modbus.PARITY_ODD}[s.Parity] // none is 0
	client, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL:      "rtu://" + path,
		Speed:    uint(s.Baud),
		DataBits: 8,
		Parity:   parity,
		StopBits: uint(s.StopBits), // the library would pick 2 for no parity; the EM340 default is 1
		Timeout:  s.Timeout,
		Logger:   slog.NewLogLogger(logger.With("component", "modbus").Handler(), slog.LevelDebug),
	})
	if err != nil {
		return nil, err
	}
	if err := client.Open(); err != nil {
		return nil, err
	}
	if err := client.SetUnitId(s.Address); err != nil {
		_ = client.Close()
		return nil, err
	}
	return client, nil
}

// classifyOpen turns an open error into the cause a user can act on.
func classifyOpen(err error) Cause {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNoAdapter), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return CauseAdapterMissing
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return CausePermissionDenied
	case errors.Is(err, syscall.EBUSY):
		return CausePortBusy
	}
	return CauseError
}

// isAdapterGone reports the I/O errors that mean the device went away: a hung-up
// tty answers EIO, a removed USB device ENODEV or ENXIO.
func isAdapterGone(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENODEV) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, syscall.EBADF)
}

// isNoAnswer reports errors that mean the meter did not answer sensibly: a run of
// them, with the node still present, means the meter is not answering.
func isNoAnswer(err error) bool {
	return errors.Is(err, modbus.ErrRequestTimedOut) || errors.Is(err, modbus.ErrBadCRC) ||
		errors.Is(err, modbus.ErrShortFrame) || errors.Is(err, modbus.ErrProtocolError) ||
		errors.Is(err, modbus.ErrBadUnitId) || errors.Is(err, modbus.ErrUnexpectedParameters)
}
