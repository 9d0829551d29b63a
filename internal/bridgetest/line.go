package bridgetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// Line is the serial half of the bridge without MQTT: the simulator on a pty,
// a link.Link running over it and a meter.Meter that proves and reads.
type Line struct {
	Sim   *emsim.Sim
	Link  *link.Link
	Meter *meter.Meter

	dir    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// OpenLine starts the simulator and the link at baud, waits until the link is
// online (the meter identified) and takes a first snapshot. Close stops both.
func OpenLine(ctx context.Context, sim emsim.Options, baud int) (_ *Line, err error) {
	dir, err := os.MkdirTemp("", "em340-line-")
	if err != nil {
		return nil, err
	}
	l := &Line{dir: dir, Sim: emsim.New(sim), Meter: meter.New(meter.Options{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	device := filepath.Join(dir, "ttyUSB0")
	if err := l.Sim.Start(device); err != nil {
		return nil, err
	}
	online := make(chan struct{}, 1)
	l.Link = link.New(link.Config{
		Device:  device,
		Serial:  link.Serial{Baud: baud, Parity: "none", StopBits: 1, Timeout: time.Second},
		Backoff: link.ReconnectBackoff{Min: 100 * time.Millisecond, Max: time.Second, Factor: 1.5},
		MinGap:  baseline.MeterGap,
		Prove: func(ctx context.Context, _ uint8, r meter.Reader) error {
			_, err := l.Meter.Connect(ctx, r)
			return err
		},
		OnChange: func(st link.Status) {
			if st.State == link.Online {
				select {
				case online <- struct{}{}:
				default:
				}
			}
		},
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.wg.Go(func() { _ = l.Link.Run(runCtx) })
	select {
	case <-online:
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("link not online: %+v", l.Link.Status())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// The meter confirms its energy totals with a second agreeing read: take
	// the first here, so every snapshot measured after is a whole one.
	if _, err := l.Read(ctx); err != nil {
		return nil, fmt.Errorf("first snapshot: %w", err)
	}
	return l, nil
}

// Read takes one snapshot through the link.
func (l *Line) Read(ctx context.Context) (meter.Reading, error) {
	var rd meter.Reading
	err := l.Link.Do(ctx, 1, func(r meter.Reader) error {
		var err error
		rd, err = l.Meter.Read(ctx, r)
		return err
	})
	return rd, err
}

// Close stops the link, then the simulator.
func (l *Line) Close() error {
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
		l.cancel = nil
	}
	return errors.Join(l.Sim.Close(), os.RemoveAll(l.dir))
}
