package link

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"
)

// port is the Modbus master on the open line to the meters: *rtuPort or
// *mbapPort. A request ends promptly when ctx is done or the line hangs up.
type port interface {
	ReadRegisters(ctx context.Context, unit uint8, addr, quantity uint16) ([]uint16, error)
	Close() error
}

// Serial is how the line is set up.
type Serial struct {
	Baud     int
	Parity   string // none, even, odd
	StopBits int
	Timeout  time.Duration // per request
}

// timeout is the per-request timeout, a second if not set.
func (s Serial) timeout() time.Duration {
	if s.Timeout <= 0 {
		return time.Second
	}
	return s.Timeout
}

// classifyOpen turns an open error into the cause a user can act on.
func classifyOpen(err error) Cause {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNoAdapter), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return CauseAdapterMissing
	case errors.Is(err, syscall.EPERM):
		// Not a file mode: a container's device cgroup rules answer EPERM.
		// (Checked before fs.ErrPermission, which matches EPERM too.)
		return CauseDeviceNotAllowed
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EACCES):
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
		errors.Is(err, syscall.EBADF) || errors.Is(err, errHungUp) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, errGatewayOutOfStep)
}

// isNoAnswer reports errors that mean the meter did not answer sensibly: a run of
// them, with the node still present, means the meter is not answering.
func isNoAnswer(err error) bool {
	return errors.Is(err, modbus.ErrRequestTimedOut) || errors.Is(err, modbus.ErrBadCRC) ||
		errors.Is(err, modbus.ErrShortFrame) || errors.Is(err, modbus.ErrProtocolError) ||
		errors.Is(err, modbus.ErrBadUnitId) || errors.Is(err, modbus.ErrUnexpectedParameters) ||
		errors.Is(err, modbus.ErrGWTargetFailedToRespond) || errors.Is(err, modbus.ErrGWPathUnavailable)
}
