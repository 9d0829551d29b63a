package containertest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// MQTT 3.1.1 by hand, just enough to log in, subscribe and read what
// arrives: the check is of the broker's answers themselves, with no client
// library deciding what a refusal looks like.

// mqttConn is one MQTT 3.1.1 connection.
type mqttConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// mqttConnect connects and logs in (anonymously when user is empty); it
// returns the CONNACK return code: 0 accepted, 4 bad user name or
// password, 5 not authorized.
func mqttConnect(addr, user, password string) (*mqttConn, byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, 0, err
	}
	c := &mqttConn{conn: conn, r: bufio.NewReader(conn)}
	_ = conn.SetDeadline(time.Now().Add(hang))

	flags := byte(0x02) // clean session
	payload := mqttString(fmt.Sprintf("em340ct-%d", time.Now().UnixNano()))
	if user != "" {
		flags |= 0x80 | 0x40
		payload = append(payload, mqttString(user)...)
		payload = append(payload, mqttString(password)...)
	}
	body := append(mqttString("MQTT"), 4, flags, 0, 60) // level 4 = 3.1.1, keep alive 60 s
	body = append(body, payload...)
	if err := c.write(0x10, body); err != nil {
		conn.Close()
		return nil, 0, err
	}
	typ, ack, err := c.read()
	if err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("reading CONNACK: %w", err)
	}
	if typ != 2 || len(ack) != 2 {
		conn.Close()
		return nil, 0, fmt.Errorf("packet type %d (%d bytes) instead of CONNACK", typ, len(ack))
	}
	return c, ack[1], nil
}

// subscribe subscribes to filter at QoS 0 and waits for the SUBACK.
func (c *mqttConn) subscribe(filter string) error {
	body := append([]byte{0, 1}, mqttString(filter)...)
	body = append(body, 0)
	if err := c.write(0x82, body); err != nil {
		return err
	}
	for {
		typ, b, err := c.read()
		if err != nil {
			return err
		}
		if typ == 9 {
			if len(b) != 3 || b[2] == 0x80 {
				return fmt.Errorf("subscription to %s refused", filter)
			}
			return nil
		}
	}
}

// next returns the topic and payload of the next PUBLISH.
func (c *mqttConn) next() (topic, payload string, err error) {
	for {
		typ, b, err := c.read()
		if err != nil {
			return "", "", err
		}
		if typ != 3 || len(b) < 2 {
			continue
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return "", "", fmt.Errorf("short PUBLISH")
		}
		return string(b[2 : 2+n]), string(b[2+n:]), nil // QoS 0: no packet id
	}
}

func (c *mqttConn) Close() error { return c.conn.Close() }

func (c *mqttConn) write(header byte, body []byte) error {
	pkt := []byte{header}
	for n := len(body); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	_, err := c.conn.Write(append(pkt, body...))
	return err
}

// read returns one packet's type and variable header plus payload.
func (c *mqttConn) read() (byte, []byte, error) {
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return h >> 4, body, nil
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}
