// Package link owns the serial line to the meter and its lifecycle: it opens the
// port, serialises requests, notices loss at once and reconnects with backoff.
package link

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/avast/retry-go/v4"

	"github.com/em340-bridge/em340-bridge/meter"
)

// ErrNotOnline is returned by Do while the link is not online.
var ErrNotOnline = errors.New("serial link is not online")

// Prover checks that the meter answers and is the expected one; the link calls
// it after every open and is online only once it succeeds. An error matching
// meter.ErrWrongMeter still brings the link online, with CauseWrongMeter.
type Prover func(ctx context.Context, r meter.Reader) error

// Config sets up a Link.
type Config struct {
	Device       string // path, by-id link or usb:VID:PID[:SERIAL]
	Serial       Serial
	Backoff      ReconnectBackoff
	OfflineAfter time.Duration // reconnecting → offline
	MinGap       time.Duration // quiet time after a reply before the next query (EM340: 40 ms)
	MaxNoAnswer  int           // consecutive unanswered requests that mean the meter is gone (EM340: 2–3)
	// MaxFailedSnapshots is how many Do sessions in a row may fail (fn returns
	// an error other than ctx's) before the link counts the meter as not
	// answering and reconnects; 0 means 3. Garbled or stale replies fail a
	// snapshot without ever being "unanswered".
	MaxFailedSnapshots int
	Prove              Prover
	OnChange           func(Status) // called, in order, on every state or cause change; must not block
	Logger             *slog.Logger

	open      func(path string, s Serial) (port, error) // nil: openRTU
	sys       sysfs                                     // zero: /sys and /dev
	enumerate func(at string) ([]usbPort, error)        // nil: sys.ports
}

// Link is the serial link to one meter. Create it with New, run it with Run,
// and read through Do.
type Link struct {
	cfg Config
	log *slog.Logger
	res resolver

	session sync.Mutex // held by Do and by (re)connecting: a snapshot never meets a reopen

	mu       sync.Mutex // guards what follows
	port     port
	online   bool
	status   Status
	lostAt   time.Time
	outageID int       // bumped at every loss and recovery; stale offline timers check it
	resolved string    // device node in use or last tried
	lastIO   time.Time // end of the last request, for the inter-frame gap
	noAnswer int       // consecutive unanswered requests
	failedDo int       // consecutive failed Do sessions
	deniedAt time.Time // first EACCES of the current run of them; zero: none
	// adapter is the USB adapter port the configured link last led to: the
	// kernel keeps no record of an unplugged adapter, so this is the only one.
	adapter *usbPort

	notify sync.Mutex // orders OnChange calls
	lost   chan Cause // the request path reports loss to Run

	everOnline   bool
	offlineTimer *time.Timer
}

// New returns a link; nothing is opened until Run.
func New(cfg Config) *Link {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.open == nil {
		cfg.open = openRTU
	}
	if cfg.enumerate == nil {
		cfg.enumerate = cfg.sys.ports
	}
	if cfg.MaxNoAnswer < 1 {
		cfg.MaxNoAnswer = 3
	}
	if cfg.MaxFailedSnapshots < 1 {
		cfg.MaxFailedSnapshots = 3
	}
	if cfg.Prove == nil {
		cfg.Prove = func(context.Context, meter.Reader) error { return nil }
	}
	return &Link{
		cfg:    cfg,
		log:    cfg.Logger,
		res:    resolver{device: cfg.Device, sys: cfg.sys, enumerate: cfg.enumerate},
		status: Status{State: Reconnecting, Cause: CauseStarting, Since: time.Now(), Device: cfg.Device},
		lost:   make(chan Cause, 1),
	}
}

// Status is the link's state now.
func (l *Link) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Run keeps the link up until ctx is done, then closes the port. It returns
// ctx's error, or an error if the device directory cannot be watched.
func (l *Link) Run(ctx context.Context) error {
	watch, err := newDirWatch(l.watchTargets, l.configuredPresent, l.log)
	if err != nil {
		return fmt.Errorf("watch device directory: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	defer func() {
		stopWatch()
		watching.Wait()
		_ = watch.close()
	}()
	watching.Go(func() { watch.run(watchCtx) })

	defer l.stopOfflineTimer()
	l.beginOutage(CauseStarting, "")
	for {
		err := retry.Do(func() error { return l.connect(ctx) },
			retry.Context(ctx),
			retry.Attempts(0),
			retry.DelayType(l.cfg.Backoff.delayType(l.isOffline, l.inPermissionGrace)),
			retry.MaxDelay(l.cfg.Backoff.Max),
			retry.WithTimer(wakeTimer{ctx: ctx, wake: watch.appeared}),
		)
		if err != nil {
			l.closePort()
			return err
		}
		cause, detail, err := l.waitForLoss(ctx, watch)
		if err != nil {
			l.closePort()
			return err
		}
		// Say so first: closing waits for a request in flight to end (one read slice).
		l.beginOutage(cause, detail)
		l.closePort()
	}
}

// waitForLoss blocks while the link is online, until a request reports loss,
// the device node vanishes, or ctx is done.
func (l *Link) waitForLoss(ctx context.Context, watch *dirWatch) (Cause, string, error) {
	for {
		select {
		case <-ctx.Done():
			return CauseNone, "", ctx.Err()
		case cause := <-l.lost:
			return cause, "", nil
		case <-watch.changed:
			if !l.stillPresent() {
				return CauseAdapterMissing, "device node removed", nil
			}
		}
	}
}

// Do runs fn with the meter reader while the link is online; a snapshot made of
// several requests is never interleaved with a reconnect.
func (l *Link) Do(ctx context.Context, fn func(r meter.Reader) error) error {
	l.session.Lock()
	defer l.session.Unlock()
	l.mu.Lock()
	p, online := l.port, l.online
	l.mu.Unlock()
	if !online {
		return ErrNotOnline
	}
	err := fn(reader{l: l, p: p})
	l.afterSession(ctx, err)
	return err
}

// afterSession counts failed sessions: a meter that answers every request,
// but with garbage, never trips MaxNoAnswer.
func (l *Link) afterSession(ctx context.Context, err error) {
	if ctx.Err() != nil && err != nil {
		return // cancelled: says nothing about the meter
	}
	l.mu.Lock()
	if err == nil {
		l.failedDo = 0
	} else {
		l.failedDo++
	}
	failed := l.failedDo >= l.cfg.MaxFailedSnapshots
	l.mu.Unlock()
	if failed {
		l.reportLost(CauseMeterSilent)
	}
}

// connect is one attempt: resolve, open, prove. It holds the session so no Do
// runs against a half-open port.
func (l *Link) connect(ctx context.Context) error {
	l.session.Lock()
	defer l.session.Unlock()
	l.drain()
	l.mu.Lock()
	known := l.adapter
	l.mu.Unlock()
	start := time.Now()
	path, port, err := l.res.resolve(known)
	resolved := time.Since(start)
	l.mu.Lock()
	l.resolved = path
	l.mu.Unlock()
	if err != nil {
		l.openFailed(err)
		return err
	}
	p, err := l.cfg.open(path, l.cfg.Serial)
	if err != nil {
		l.openFailed(err)
		return err
	}
	l.log.Debug("port opened", "device", path, "resolve", resolved, "open", time.Since(start)-resolved)
	if port != nil {
		l.mu.Lock()
		l.adapter = port // found through sysfs: known already
		l.mu.Unlock()
	} else {
		l.learnAdapter(path)
	}
	l.mu.Lock()
	l.port, l.noAnswer, l.failedDo, l.deniedAt = p, 0, 0, time.Time{}
	l.mu.Unlock()
	proveErr := l.cfg.Prove(ctx, reader{l: l, p: p})
	if proveErr != nil && !errors.Is(proveErr, meter.ErrWrongMeter) {
		l.closePort()
		l.drain()
		cause := CauseMeterSilent
		if isAdapterGone(proveErr) && !l.stillPresent() {
			cause = CauseAdapterMissing
		}
		l.setCause(cause, proveErr)
		return proveErr
	}
	l.goOnline(proveErr)
	return nil
}

// drain forgets a loss reported by a request that ran before this attempt.
func (l *Link) drain() {
	select {
	case <-l.lost:
	default:
	}
}

func (l *Link) closePort() {
	l.mu.Lock()
	p := l.port
	l.port, l.online = nil, false
	l.mu.Unlock()
	if p != nil {
		if err := p.Close(); err != nil {
			l.log.Debug("close port", "err", err)
		}
	}
}

// permissionGrace is how long EACCES may last before it is the cause shown:
// udev creates the node 0600 root:root and gives it group dialout ~90 ms
// later, so a non-root bridge sees EACCES at every replug for a moment.
const permissionGrace = time.Second

// graceDelay caps the backoff while EACCES may still be udev's chmod to come.
const graceDelay = 100 * time.Millisecond

// openFailed records why an open failed. A brief EACCES keeps the cause the
// outage had (adapter missing); only one lasting permissionGrace is shown.
func (l *Link) openFailed(err error) {
	cause := classifyOpen(err)
	if cause == CausePermissionDenied {
		l.mu.Lock()
		if l.deniedAt.IsZero() {
			l.deniedAt = time.Now()
		}
		brief := time.Since(l.deniedAt) <= permissionGrace
		l.mu.Unlock()
		if brief {
			l.log.Debug("open denied, waiting for udev to set the group", "err", err)
			return
		}
	} else {
		l.mu.Lock()
		l.deniedAt = time.Time{}
		l.mu.Unlock()
		l.log.Debug("open failed", "err", err)
	}
	if cause == CauseDeviceNotAllowed {
		err = fmt.Errorf("device not allowed by the container's device rules: %w", err)
	}
	l.setCause(cause, err)
}

// inPermissionGrace: the last opens failed with EACCES for less than permissionGrace.
func (l *Link) inPermissionGrace() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.deniedAt.IsZero() && time.Since(l.deniedAt) <= permissionGrace
}

// watchTargets are the paths the directory watch follows: the configured one
// first, then the node in use or last tried.
func (l *Link) watchTargets() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	configured := l.cfg.Device
	if _, usb := parseUSB(configured); usb {
		configured = filepath.Join(l.cfg.sys.devDir(), "tty") // the adapter's node appears there
	}
	return []string{configured, l.resolved}
}

// configuredPresent: the configured path leads to an existing node. (A USB
// identity is not a path: its node is found by enumerating.)
func (l *Link) configuredPresent() bool {
	if _, usb := parseUSB(l.cfg.Device); usb {
		return false
	}
	_, err := os.Stat(l.cfg.Device)
	return err == nil
}

// stillPresent: the node in use is still there and the configured path, if
// it exists, still leads to it (udev may not have made the by-id link yet
// when the node was found without it). A few stats: it runs at every change
// in the watched directories and after unanswered requests.
func (l *Link) stillPresent() bool {
	l.mu.Lock()
	node := l.resolved
	l.mu.Unlock()
	if node == "" {
		return false
	}
	if _, err := os.Stat(node); err != nil {
		return false
	}
	if _, usb := parseUSB(l.cfg.Device); usb {
		return true
	}
	path, err := filepath.EvalSymlinks(l.cfg.Device)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && path == node
}

// learnAdapter remembers which USB adapter port a configured link (by-id,
// by-path, a udev rule's) led to, so that at the next replug its node is
// opened before udev has made the link again. (A usb: identity and a node
// found without the link are known from sysfs already; a node path names
// the node, whatever adapter gets it.) It runs with the port just opened,
// while the node surely exists (an unplug right after the open would leave
// nothing to learn from), and reads the node's own entry in sysfs.
func (l *Link) learnAdapter(node string) {
	if _, usb := parseUSB(l.cfg.Device); usb || node == filepath.Clean(l.cfg.Device) {
		return
	}
	if target, err := filepath.EvalSymlinks(l.cfg.Device); err != nil || target != node {
		return
	}
	p, ok := l.res.portOf(node)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ok && p.Node == filepath.Clean(l.cfg.Device):
		l.adapter = nil // the configured path is the node itself
	case ok:
		l.adapter = &p
	default:
		l.adapter = nil // not a USB serial port
	}
}

func (l *Link) stopOfflineTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.offlineTimer != nil {
		l.offlineTimer.Stop()
	}
}

func (l *Link) isOffline() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.State == Offline
}
