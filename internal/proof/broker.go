package proof

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Broker is a Mosquitto child process on a free loopback port, with
// persistence off, so a restart loses retained messages and sessions.
type Broker struct {
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartBroker runs mosquitto (from PATH or /usr/sbin); Stop ends it.
func StartBroker() (*Broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(bin); serr != nil {
			return nil, fmt.Errorf("mosquitto not found (apt-get install -y mosquitto): %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "em340-proof-mosquitto-")
	if err != nil {
		return nil, err
	}
	// Started as root, mosquitto drops to user mosquitto: its config must be readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	port, err := freePort()
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	b := &Broker{bin: bin, dir: dir, port: port}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	if err := os.WriteFile(b.confPath(), []byte(conf), 0o644); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	if err := b.start(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return b, nil
}

// URL is the broker's address for EM340_MQTT_URL.
func (b *Broker) URL() string { return "mqtt://" + b.Addr() }

// Addr is host:port.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// PID is the mosquitto process id; 0 while stopped.
func (b *Broker) PID() int {
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

func (b *Broker) confPath() string { return filepath.Join(b.dir, "mosquitto.conf") }

func (b *Broker) start() error {
	cmd := exec.Command(b.bin, "-c", b.confPath())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.cmd, b.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", b.Addr(), 100*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-done:
			b.cmd = nil
			return fmt.Errorf("mosquitto exited at start (port %d)", b.port)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return errors.Join(fmt.Errorf("mosquitto did not accept connections on %d", b.port), b.kill())
}

func (b *Broker) kill() error {
	if b.cmd == nil {
		return nil
	}
	err := b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Restart kills the broker and starts a new one on the same port.
func (b *Broker) Restart() error {
	if err := b.kill(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return b.start()
}

// Stop kills the broker, waits for it and removes its files; safe to call twice.
func (b *Broker) Stop() error {
	err := b.kill()
	if b.dir != "" {
		err = errors.Join(err, os.RemoveAll(b.dir))
		b.dir = ""
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
