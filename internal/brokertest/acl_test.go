package brokertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestDenyPublish: a denied QoS 1 publish fails at the client (PUBACK "not
// authorized"), and lifting the denial lets the same publish through.
func TestDenyPublish(t *testing.T) {
	b := Start(t)
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "acl", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	publish := func() error {
		_, err := c.Publish(ctx, &paho.Publish{Topic: "a/b", Payload: []byte("x"), QoS: 1})
		return err
	}
	if err := publish(); err != nil {
		t.Fatalf("allowed publish: %v", err)
	}
	if err := b.DenyPublish("a/b"); err != nil {
		t.Fatal(err)
	}
	var denied error
	for i := 0; i < 100 && denied == nil; i++ { // the reload is asynchronous
		time.Sleep(20 * time.Millisecond)
		denied = publish()
	}
	if denied == nil {
		t.Fatal("publish still accepted after DenyPublish")
	}
	if err := b.DenyPublish(); err != nil {
		t.Fatal(err)
	}
	var allowed bool
	for i := 0; i < 100 && !allowed; i++ {
		time.Sleep(20 * time.Millisecond)
		allowed = publish() == nil
	}
	if !allowed {
		t.Fatal("publish still refused after the denial was lifted")
	}
}
