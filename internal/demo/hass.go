package demo

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
)

// hass is what Home Assistant knows from MQTT alone: the devices that discovery
// announced, the availability topics they name and the last state of each.
// The demo shows the bridge through it, so the screen is what HA would show.
type hass struct {
	prefix    string             // discovery prefix: <prefix>/device/<id>/config
	devices   []*device          // in order of discovery
	avail     map[string]payload // last payload on every topic, for availability
	seq       int                // counts messages, to know which arrived last
	available map[*device]bool   // as last reported, to notice changes
}

type payload struct {
	value string
	seq   int
}

// device is one discovered HA device.
type device struct {
	topic   string // its discovery config topic
	raw     []byte // the config payload, to notice a change
	config  discovery.DeviceConfig
	fields  map[string]string          // component key → the state field its value template reads
	state   map[string]json.RawMessage // the last state payload, by field
	stateAt time.Time                  // when it arrived at the subscriber
}

// changes are what one message changed in HA's view.
type changes struct {
	discovered *device   // a new device
	updated    *device   // a device whose config changed
	removed    string    // the name of a device whose config was deleted
	state      *device   // a device whose state arrived
	avail      []*device // devices whose availability flipped
}

func newHass(prefix string) *hass {
	return &hass{prefix: prefix, avail: map[string]payload{}, available: map[*device]bool{}}
}

// apply takes one message as HA would.
func (h *hass) apply(m message) changes {
	h.seq++
	h.avail[m.topic] = payload{value: string(m.payload), seq: h.seq}
	var c changes
	if strings.HasPrefix(m.topic, h.prefix+"/device/") && strings.HasSuffix(m.topic, "/config") {
		c = h.applyConfig(m)
	}
	for _, d := range h.devices {
		if d.config.StateTopic == m.topic {
			var state map[string]json.RawMessage
			if json.Unmarshal(m.payload, &state) == nil {
				d.state, d.stateAt, c.state = state, m.at, d
			}
		}
	}
	for _, d := range h.devices {
		now := h.isAvailable(d)
		if was, known := h.available[d]; !known && now || known && was != now {
			c.avail = append(c.avail, d)
		}
		h.available[d] = now
	}
	return c
}

func (h *hass) applyConfig(m message) changes {
	i := slices.IndexFunc(h.devices, func(d *device) bool { return d.topic == m.topic })
	if len(m.payload) == 0 { // a retained empty payload deletes the device
		if i < 0 {
			return changes{}
		}
		d := h.devices[i]
		h.devices = slices.Delete(h.devices, i, i+1)
		delete(h.available, d)
		return changes{removed: d.config.Device.Name}
	}
	var cfg discovery.DeviceConfig
	if err := json.Unmarshal(m.payload, &cfg); err != nil {
		return changes{} // HA logs and ignores a config it cannot parse
	}
	if i >= 0 {
		d := h.devices[i]
		if bytes.Equal(d.raw, m.payload) {
			return changes{} // the bridge re-announces on every (re)connect
		}
		d.raw, d.config, d.fields = m.payload, cfg, templateFields(cfg)
		return changes{updated: d}
	}
	d := &device{topic: m.topic, raw: m.payload, config: cfg, fields: templateFields(cfg)}
	h.devices = append(h.devices, d)
	return changes{discovered: d}
}

// isAvailable follows HA's availability modes: all, any, or (the default)
// whichever of the topics spoke last. A topic not heard from is unavailable.
func (h *hass) isAvailable(d *device) bool {
	list := d.config.Availability
	if len(list) == 0 {
		return true
	}
	ok := func(a discovery.Availability) bool {
		p, heard := h.avail[a.Topic]
		value := p.value
		if a.ValueTemplate == discovery.LinkOnlineTemplate { // the link topic's JSON, read as HA would
			var link struct{ State string }
			if json.Unmarshal([]byte(p.value), &link) != nil {
				return false
			}
			value = discovery.PayloadOffline
			if link.State == string(discovery.LinkOnline) {
				value = discovery.PayloadOnline
			}
		}
		return heard && value == a.PayloadAvailable
	}
	switch d.config.AvailabilityMode {
	case "all":
		return !slices.ContainsFunc(list, func(a discovery.Availability) bool { return !ok(a) })
	case "any":
		return slices.ContainsFunc(list, ok)
	}
	last := list[0]
	for _, a := range list[1:] {
		if h.avail[a.Topic].seq > h.avail[last.Topic].seq {
			last = a
		}
	}
	return ok(last)
}

// find returns the first device with a component of that key.
func (h *hass) find(key string) *device {
	for _, d := range h.devices {
		if _, ok := d.config.Components[key]; ok {
			return d
		}
	}
	return nil
}

// value is what HA shows for an entity: "unavailable", "unknown", or the value
// its template reads from the last state, with the unit.
func (h *hass) value(d *device, key string) string {
	c, ok := d.config.Components[key]
	if !ok {
		return ""
	}
	if !h.isAvailable(d) {
		return "unavailable"
	}
	raw, ok := d.state[d.fields[key]]
	if !ok || string(raw) == "null" {
		return "unknown"
	}
	var text string
	if json.Unmarshal(raw, &text) != nil {
		text = string(raw) // a number, shown as HA would: rounded to the suggested precision
		if v, err := strconv.ParseFloat(text, 64); err == nil && c.SuggestedDisplayPrecision != nil {
			text = strconv.FormatFloat(v, 'f', *c.SuggestedDisplayPrecision, 64)
		}
	}
	if c.Unit != "" {
		text += " " + c.Unit
	}
	return text
}

func templateFields(cfg discovery.DeviceConfig) map[string]string {
	fields := make(map[string]string, len(cfg.Components))
	for key, c := range cfg.Components {
		if f := templateField(c.ValueTemplate); f != "" {
			fields[key] = f
		}
	}
	return fields
}

// templateField finds "x" in "{{ value_json.x }}" and in "{{ value_json.x[:255] }}":
// the bridge's templates only ever read one field.
func templateField(template string) string {
	_, rest, ok := strings.Cut(template, "value_json.")
	if !ok {
		return ""
	}
	end := strings.IndexFunc(rest, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	if end < 0 {
		end = len(rest)
	}
	return rest[:end]
}
