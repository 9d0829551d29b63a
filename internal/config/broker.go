package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// defaultPort is the usual broker port for scheme; Load adds it to a URL
// without one because the MQTT client dials host:port as given.
func defaultPort(scheme string) (string, bool) {
	switch scheme {
	case "mqtt":
		return "1883", true
	case "mqtts":
		return "8883", true
	case "ws":
		return "80", true
	case "wss":
		return "443", true
	}
	return "", false
}

func isTLS(scheme string) bool { return scheme == "mqtts" || scheme == "wss" }

// brokerURL parses and completes EM340_MQTT_URL. Errors never repeat the
// URL, which might hold a password.
func brokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL itself
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	port, ok := defaultPort(u.Scheme)
	switch {
	case !ok:
		return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
	case u.User != nil:
		return nil, errors.New("has user:password@; use EM340_MQTT_USERNAME and EM340_MQTT_PASSWORD")
	case u.Hostname() == "":
		return nil, errors.New("no host")
	case strings.Contains(u.Hostname(), ":") && net.ParseIP(u.Hostname()) == nil:
		return nil, errors.New("a bracketed host that is not an IPv6 address")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %s out of range 1–65535", p)
		}
		return u, nil
	}
	u.Host = net.JoinHostPort(u.Hostname(), port)
	return u, nil
}

// TLSConfig is what the MQTT client needs for mqtts:// and wss:// URLs,
// built from EM340_MQTT_CA_FILE and EM340_MQTT_INSECURE. It is nil for
// plain-text URLs.
func (c Config) TLSConfig() (*tls.Config, error) {
	u, err := url.Parse(c.MQTTURL)
	if err != nil {
		return nil, fmt.Errorf("EM340_MQTT_URL: %w", err)
	}
	if !isTLS(u.Scheme) {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.MQTTInsecure, //nolint:gosec // the user's explicit choice, documented as testing only
	}
	if c.MQTTCAFile != "" {
		if tc.RootCAs, err = loadCAs(c.MQTTCAFile); err != nil {
			return nil, fmt.Errorf("EM340_MQTT_CA_FILE: %w", err)
		}
	}
	return tc, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return pool, nil
}
