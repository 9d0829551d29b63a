// Package brokertest runs a real Mosquitto broker for tests, on a free loopback
// port, and records what a subscriber (Home Assistant's view) receives.
package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// Broker is a mosquitto child process.
type Broker struct {
	t    testing.TB
	bin  string
	Port int
	// With StartTLS: the TLS listener's port and the CA that signed its certificate.
	TLSPort int
	CAFile  string
	conf    string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs mosquitto with persistence off (as a broker restart loses retained
// messages) and stops it when the test ends.
func Start(t testing.TB) *Broker {
	t.Helper()
	return start(t, "")
}

// StartTLS is Start with a second listener that speaks TLS with a certificate
// for "localhost" signed by a CA made for the test; TLSURL and CAFile say
// where. The plain listener stays for subscribers.
func StartTLS(t testing.TB) *Broker {
	t.Helper()
	return start(t, "tls")
}

func start(t testing.TB, mode string) *Broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			testenv.Missing(t, "mosquitto", "apt-get install -y mosquitto")
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir, err := os.MkdirTemp("", "em340-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// mosquitto started as root drops to user mosquitto: its config must be readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, bin: bin, Port: freePort(t), conf: filepath.Join(dir, "mosquitto.conf")}
	conf := fmt.Sprintf("per_listener_settings false\nallow_anonymous true\npersistence false\nlistener %d 127.0.0.1\n", b.Port)
	if mode == "tls" {
		b.TLSPort = freePort(t)
		b.CAFile = filepath.Join(dir, "ca.pem")
		cert, key := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key")
		writeCertificates(t, b.CAFile, cert, key)
		conf += fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", b.TLSPort, b.CAFile, cert, key)
	}
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// URL is the broker's address for EM340_MQTT_URL.
func (b *Broker) URL() string { return "mqtt://127.0.0.1:" + strconv.Itoa(b.Port) }

// TLSURL is the TLS listener's address (StartTLS only).
func (b *Broker) TLSURL() string { return "mqtts://localhost:" + strconv.Itoa(b.TLSPort) }

func (b *Broker) start() {
	b.t.Helper()
	b.cmd = exec.Command(b.bin, "-c", b.conf)
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(b.cmd, b.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.done:
			b.t.Fatalf("mosquitto exited at start (port %d)", b.Port)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.t.Fatalf("mosquitto did not accept connections on %d", b.Port)
}

// Stop kills the broker and waits for it; safe to call twice.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
}

// Restart stops the broker (if running) and starts a new one on the same port,
// losing every retained message and session, as a broker without persistence does.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
