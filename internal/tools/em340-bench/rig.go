package main

import (
	"context"
	"errors"

	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// rig is the whole bridge in this process (bridgetest.Rig) against a
// Mosquitto of its own.
type rig struct {
	*bridgetest.Rig
	broker *brokertest.Process
}

// startRig starts Mosquitto, then the rig (without the bridge if noBridge).
func startRig(ctx context.Context, sim emsim.Options, env []string, noBridge bool) (*rig, error) {
	broker, err := brokertest.StartProcess(false)
	if err != nil {
		return nil, err
	}
	r, err := bridgetest.Start(ctx, bridgetest.Options{Broker: broker, Sim: sim, Env: env, NoBridge: noBridge, ClientID: "bench-ha"})
	if err != nil {
		return nil, errors.Join(err, broker.Close())
	}
	return &rig{Rig: r, broker: broker}, nil
}

// restartBroker kills Mosquitto, starts it again on the same port and
// reconnects the subscriber (the bridge reconnects by itself).
func (r *rig) restartBroker(ctx context.Context) error {
	if err := r.broker.Restart(); err != nil {
		return err
	}
	return r.HA.Reconnect(ctx)
}

// Close stops the rig, then the broker.
func (r *rig) Close() error { return errors.Join(r.Rig.Close(), r.broker.Close()) }
