package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"s3cret\n", "s3cret"},
		{"s3cret\r\n", "s3cret"},
		{"s3cret", "s3cret"},
		{" spaced pass \n", " spaced pass "},
	} {
		f := filepath.Join(dir, "pw")
		if err := os.WriteFile(f, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{"EM340_MQTT_PASSWORD_FILE=" + f})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.MQTTPassword.Reveal(); got != tt.want {
			t.Errorf("file %q: password %q, want %q", tt.content, got, tt.want)
		}
	}
}

const secret = "hunter2-do-not-print"

func TestSecretsStayOutOfErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte(secret+"file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, environ := range [][]string{
		{"EM340_MQTT_PASSWORD=" + secret, "EM340_MQTT_PASSWORD_FILE=" + f},
		{"EM340_MQTT_URL=mqtt://user:" + secret + "@"},
		{"EM340_MQTT_URL=mqtt://user:" + secret + "@broker lan"},
		{"EM340_MQTT_URL=http://user:" + secret + "@broker"},
	} {
		_, err := Load(environ)
		if err == nil {
			t.Fatalf("Load(%q) succeeded", environ)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Load(%q): error shows the secret: %v", environ, err)
		}
	}
}

func TestSecretsStayOutOfOutput(t *testing.T) {
	c, err := Load([]string{"EM340_MQTT_PASSWORD=" + secret})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c, "password", c.MQTTPassword)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		fmt.Fprintf(&buf, verb+"\n", c)
		fmt.Fprintf(&buf, verb+"\n", c.MQTTPassword)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(j)

	out := buf.String()
	if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
		t.Errorf("output shows the secret:\n%s", out)
	}
	if !strings.Contains(out, "mqtt_password=[redacted]") {
		t.Errorf("slog output does not show that a password is set:\n%s", out)
	}
	if c.MQTTPassword.Reveal() != secret {
		t.Errorf("Reveal() = %q", c.MQTTPassword.Reveal())
	}
}
