package demo

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// broker is an MQTT broker inside the demo's process, on a free loopback port:
// anyone may connect, nothing is persisted, as a throwaway Mosquitto would be.
type broker struct {
	server *mqtt.Server
	port   int
}

// startBroker listens on 127.0.0.1 at a port the system picks and serves
// until close.
func startBroker(log *slog.Logger) (*broker, error) {
	server := mqtt.New(&mqtt.Options{Logger: log.With("component", "broker")})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "demo", Address: "127.0.0.1:0"})
	if err := server.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen: %w", err)
	}
	_, port, err := net.SplitHostPort(tcp.Address())
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("broker: address %q: %w", tcp.Address(), err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("broker: port %q: %w", port, err)
	}
	if err := server.Serve(); err != nil {
		server.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &broker{server: server, port: n}, nil
}

// Addr is host:port for MQTT clients.
func (b *broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// URL is the broker for EM340_MQTT_URL.
func (b *broker) URL() string { return "mqtt://" + b.Addr() }

// close disconnects every client and stops listening; the clients' goroutines
// have ended when it returns.
func (b *broker) close() { _ = b.server.Close() }
