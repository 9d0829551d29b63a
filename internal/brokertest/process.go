package brokertest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Process is a Mosquitto child process on a free loopback port, with
// persistence off, so a restart loses retained messages and sessions, as a
// broker without persistence does. Tests use it through Start; commands (the
// benchmarks) directly.
type Process struct {
	bin, dir string
	port     int
	tlsPort  int    // 0 without TLS
	CAFile   string // with TLS: the CA that signed the listener's certificate
	cmd      *exec.Cmd
	done     chan struct{}
}

// ErrNoMosquitto means the mosquitto binary is not installed.
var ErrNoMosquitto = errors.New("mosquitto not found (apt-get install -y mosquitto)")

// StartProcess runs mosquitto (from PATH or /usr/sbin). With withTLS it adds a
// second listener that speaks TLS with a certificate for localhost signed by a
// CA made for the occasion. Close ends it and removes its files.
func StartProcess(withTLS bool) (*Process, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(bin); serr != nil {
			return nil, ErrNoMosquitto
		}
	}
	dir, err := os.MkdirTemp("", "em340-mosquitto-")
	if err != nil {
		return nil, err
	}
	p := &Process{bin: bin, dir: dir}
	if err := p.configure(withTLS); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	if err := p.start(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return p, nil
}

func (p *Process) configure(withTLS bool) error {
	// Started as root, mosquitto drops to user mosquitto: its files must be readable.
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return err
	}
	var err error
	if p.port, err = freePort(); err != nil {
		return err
	}
	// Every client may do anything until DenyPublish says otherwise.
	if err := os.WriteFile(p.aclPath(), []byte(allowAll), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf("per_listener_settings false\nallow_anonymous true\npersistence false\nacl_file %s\nlistener %d 127.0.0.1\n", p.aclPath(), p.port)
	if withTLS {
		if p.tlsPort, err = freePort(); err != nil {
			return err
		}
		p.CAFile = filepath.Join(p.dir, "ca.pem")
		cert, key := filepath.Join(p.dir, "broker.pem"), filepath.Join(p.dir, "broker.key")
		if err := writeCertificates(p.CAFile, cert, key); err != nil {
			return err
		}
		conf += fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", p.tlsPort, p.CAFile, cert, key)
	}
	return os.WriteFile(p.confPath(), []byte(conf), 0o644)
}

// URL is the plain listener's address for EM340_MQTT_URL.
func (p *Process) URL() string { return "mqtt://" + p.Addr() }

// Addr is the plain listener's host:port.
func (p *Process) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// TLSURL is the TLS listener's address (StartProcess(true) only).
func (p *Process) TLSURL() string { return "mqtts://localhost:" + strconv.Itoa(p.tlsPort) }

// PID is the mosquitto process id; 0 while stopped.
func (p *Process) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Process) confPath() string { return filepath.Join(p.dir, "mosquitto.conf") }
func (p *Process) aclPath() string  { return filepath.Join(p.dir, "acl") }

const allowAll = "topic readwrite #\n"

// DenyPublish makes the broker refuse publications to these topics (a QoS 1
// publish then gets a PUBACK with "not authorized"); none restores the rest.
// Mosquitto rereads its ACL on SIGHUP.
func (p *Process) DenyPublish(topics ...string) error {
	acl := ""
	for _, t := range topics {
		acl += "topic deny " + t + "\n"
	}
	acl += allowAll
	if err := os.WriteFile(p.aclPath(), []byte(acl), 0o644); err != nil {
		return err
	}
	if p.cmd == nil {
		return nil
	}
	return p.cmd.Process.Signal(syscall.SIGHUP)
}

func (p *Process) start() error {
	cmd := exec.Command(p.bin, "-c", p.confPath())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", p.Addr(), 100*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-done:
			p.cmd = nil
			return fmt.Errorf("mosquitto exited at start (port %d)", p.port)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return errors.Join(fmt.Errorf("mosquitto did not accept connections on %d", p.port), p.Kill())
}

// Kill ends the broker and waits for it, keeping its files for a Restart;
// safe to call twice.
func (p *Process) Kill() error {
	if p.cmd == nil {
		return nil
	}
	err := p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Restart kills the broker (if running) and starts a new one on the same ports.
func (p *Process) Restart() error {
	if err := p.Kill(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return p.start()
}

// Close kills the broker and removes its files; safe to call twice.
func (p *Process) Close() error {
	err := p.Kill()
	if p.dir != "" {
		err = errors.Join(err, os.RemoveAll(p.dir))
		p.dir = ""
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
