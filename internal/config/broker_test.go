package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCA writes a self-signed CA certificate to dir and returns its path.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSConfig(t *testing.T) {
	ca := writeCA(t, t.TempDir())
	tests := []struct {
		env                []string
		wantTLS, wantRoots bool
		wantInsecure       bool
	}{
		{env: nil},
		{env: []string{"EM340_MQTT_URL=ws://b"}},
		{env: []string{"EM340_MQTT_URL=mqtts://b"}, wantTLS: true},
		{env: []string{"EM340_MQTT_URL=wss://b", "EM340_MQTT_CA_FILE=" + ca}, wantTLS: true, wantRoots: true},
		{env: []string{"EM340_MQTT_URL=mqtts://b", "EM340_MQTT_INSECURE=1"}, wantTLS: true, wantInsecure: true},
	}
	for _, tt := range tests {
		c, err := Load(tt.env)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := c.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		if (tc != nil) != tt.wantTLS {
			t.Fatalf("%q: TLS config %v, want TLS %v", tt.env, tc, tt.wantTLS)
		}
		if tc != nil && ((tc.RootCAs != nil) != tt.wantRoots || tc.InsecureSkipVerify != tt.wantInsecure) {
			t.Errorf("%q: RootCAs set %v, InsecureSkipVerify %v", tt.env, tc.RootCAs != nil, tc.InsecureSkipVerify)
		}
	}
}
