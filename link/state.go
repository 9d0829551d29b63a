package link

import (
	"log/slog"
	"slices"
	"time"
)

// LinkState is what the link is doing, in the words Home Assistant shows.
type LinkState string

const (
	Online       LinkState = "online"       // port open and the meter answering
	Reconnecting LinkState = "reconnecting" // lost; retrying with backoff
	Offline      LinkState = "offline"      // no success for Config.OfflineAfter; still retrying
)

// Cause says in a user's words why the link is in its state.
type Cause string

const (
	CauseNone             Cause = ""
	CauseStarting         Cause = "starting"
	CauseAdapterMissing   Cause = "adapter missing"
	CauseMeterSilent      Cause = "meter not answering"
	CausePermissionDenied Cause = "permission denied"
	CausePortBusy         Cause = "port busy"
	CauseDeviceNotAllowed Cause = "device not allowed" // EPERM: the container's device rules, not the file mode
	CauseWrongMeter       Cause = "wrong meter"
	CauseError            Cause = "error"

	// A gateway's connection, in the words of what happened to it.
	CauseGatewayRefused     Cause = "connection refused"   // nothing listens: rebooting, or wrong port
	CauseGatewayTimeout     Cause = "connection timed out" // no answer to connecting: off, or filtered
	CauseGatewayUnreachable Cause = "host unreachable"
	CauseGatewayUnknownHost Cause = "unknown host"
	CauseGatewayReset       Cause = "connection reset"  // the gateway dropped the connection
	CauseGatewayClosed      Cause = "connection closed" // the gateway ended it (or sent what is no Modbus TCP)
)

// Status is the link's state and history, as the rest of the program sees it.
type Status struct {
	State      LinkState
	Cause      Cause
	Detail     string        // the underlying error or hint, for logs and the UI
	Since      time.Time     // when State or Cause last changed
	Reconnects int           // successful reconnects after a loss
	LastOutage time.Duration // length of the last completed outage
	Device     string        // the device node in use or last tried, after resolution
	Units      []UnitStatus  // each meter on the line, in Config.Units order
}

// UnitStatus is one meter on the line as the link sees it. While the link is
// online, a meter answers until MaxNoAnswer requests or MaxFailedSnapshots
// sessions of it fail in a row, and again after a session that succeeds.
type UnitStatus struct {
	Unit      uint8
	Answering bool
	Cause     Cause  // CauseMeterSilent, CauseWrongMeter, or none
	Detail    string // the error behind Cause
}

// clone copies s, so that the copy shares no slice with the link's own.
func (s Status) clone() Status {
	s.Units = slices.Clone(s.Units)
	return s
}

// Unit is the status of the meter at unit; false if the link has no such unit.
func (s Status) Unit(unit uint8) (UnitStatus, bool) {
	for _, u := range s.Units {
		if u.Unit == unit {
			return u, true
		}
	}
	return UnitStatus{}, false
}

// isGatewayCause: the gateway itself could not be reached, as opposed to a
// meter behind it that does not answer.
func isGatewayCause(c Cause) bool {
	switch c {
	case CauseGatewayRefused, CauseGatewayTimeout, CauseGatewayUnreachable, CauseGatewayUnknownHost,
		CauseGatewayReset, CauseGatewayClosed:
		return true
	}
	return false
}

// slogLevel: losing the link is worth a warning, giving up hope an error.
func slogLevel(s LinkState) slog.Level {
	switch s {
	case Reconnecting:
		return slog.LevelWarn
	case Offline:
		return slog.LevelError
	}
	return slog.LevelInfo
}
