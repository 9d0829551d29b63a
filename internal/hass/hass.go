// Package hass stands in for Home Assistant on MQTT: a subscriber where its MQTT
// integration would be, and HA, what it records from those messages alone.
//
// HA keeps the devices that device discovery announces, their availability,
// and each entity's states. Tests feed it every message the Subscriber saw and
// assert on what HA would show and store, not on what the bridge meant to
// send; the demo shows the bridge through it. It evaluates only the templates
// the bridge uses, and reports any other as an error, so a template change
// cannot slip past the tests unmodelled.
package hass

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// States HA shows when an entity has no value to show.
const (
	Unavailable = "unavailable"
	Unknown     = "unknown"
)

// Message is one MQTT publication as the subscriber received it.
type Message struct {
	Topic   string
	Payload string
	Retain  bool
	At      time.Time // arrival at the subscriber
}

// Sample is one state an entity took: what HA writes to its state machine and,
// for numeric sensors with a state class, to the statistics.
type Sample struct {
	At    time.Time
	State string
}

// Availability is one entry of a config's availability list.
type Availability struct {
	Topic               string `json:"topic"`
	PayloadAvailable    string `json:"payload_available"`
	PayloadNotAvailable string `json:"payload_not_available"`
	ValueTemplate       string `json:"value_template"`
}

// Component is one entity of a device config, as HA reads it.
type Component struct {
	Platform       string   `json:"p"`
	UniqueID       string   `json:"unique_id"`
	Name           string   `json:"name"`
	DeviceClass    string   `json:"device_class"`
	Unit           string   `json:"unit_of_measurement"`
	StateClass     string   `json:"state_class"`
	Precision      *int     `json:"suggested_display_precision"`
	Options        []string `json:"options"`
	EntityCategory string   `json:"entity_category"`
	ValueTemplate  string   `json:"value_template"`
	ExpireAfter    int      `json:"expire_after"`
	// A component may read a topic of its own and be available on its own
	// terms; empty, it shares the device's (HA's shared options).
	StateTopic       string         `json:"state_topic"`
	Availability     []Availability `json:"availability"`
	AvailabilityMode string         `json:"availability_mode"`
}

// numeric: HA expects a number for a sensor with a unit, a state class, a
// precision or a numeric device class.
func (c Component) numeric() bool {
	return c.Unit != "" || c.StateClass != "" || c.Precision != nil ||
		c.DeviceClass != "" && c.DeviceClass != "enum" && c.DeviceClass != "timestamp" && c.DeviceClass != "date"
}

// Config is a device-based discovery payload.
type Config struct {
	Device struct {
		Identifiers  []string `json:"identifiers"`
		Name         string   `json:"name"`
		Manufacturer string   `json:"manufacturer"`
		Model        string   `json:"model"`
		SWVersion    string   `json:"sw_version"`
		SerialNumber string   `json:"serial_number"`
		ViaDevice    string   `json:"via_device"`
	} `json:"dev"`
	Origin struct {
		Name string `json:"name"`
	} `json:"o"`
	StateTopic       string               `json:"state_topic"`
	Availability     []Availability       `json:"availability"`
	AvailabilityMode string               `json:"availability_mode"`
	Components       map[string]Component `json:"cmps"`
}

// entity is one component as HA keeps it.
type entity struct {
	Component
	device    *Device
	value     string    // the native value; "" = unknown
	lastMsgAt time.Time // last message on the state topic (resets expire_after)
	history   []Sample
}

// Device is one discovered device.
type Device struct {
	Topic     string    // its discovery config topic
	Config    Config    // as last announced
	LastState time.Time // arrival of the last message on its state topic
	raw       string    // the config payload, to notice a change
}

// Change is what one message changed in HA's view.
type Change struct {
	Discovered   *Device   // a device seen for the first time
	Updated      *Device   // a known device whose config changed
	Removed      string    // the name of a device whose config was deleted
	State        *Device   // a device whose state topic the message was on
	Availability []*Device // devices that became available or unavailable
}

// device is the device a config message discovered or updated; nil otherwise.
func (c Change) device() *Device {
	if c.Discovered != nil {
		return c.Discovered
	}
	return c.Updated
}

// published is the last payload on a topic and the number of the message
// that carried it, for availability mode "latest".
type published struct {
	payload string
	seq     int
}

// HA is one Home Assistant instance's view of the broker.
type HA struct {
	prefix    string
	devices   map[string]*Device   // by config topic
	entities  map[string]*entity   // by unique_id
	topics    map[string]published // last payload of every topic, for availability
	retained  map[string]Message   // what the broker keeps for a topic, for a new subscription
	seq       int                  // messages applied
	available map[*Device]bool     // as last reported in a Change
}

// New returns an HA that reads device discovery under prefix ("homeassistant").
func New(prefix string) *HA {
	return &HA{prefix: prefix, devices: map[string]*Device{}, entities: map[string]*entity{},
		topics: map[string]published{}, retained: map[string]Message{}, available: map[*Device]bool{}}
}

// Apply takes one message as HA would and says what it changed. An error
// means HA would have logged a warning or rejected something (an invalid
// config, a template it would fail on, an invalid state): a test should fail
// on it.
func (h *HA) Apply(m Message) (Change, error) {
	h.seq++
	h.topics[m.Topic] = published{payload: m.Payload, seq: h.seq}
	switch {
	case m.Retain && m.Payload == "":
		delete(h.retained, m.Topic)
	case m.Retain:
		h.retained[m.Topic] = m
	}
	var c Change
	var errs []error
	if strings.HasPrefix(m.Topic, h.prefix+"/device/") && strings.HasSuffix(m.Topic, "/config") {
		added, err := h.applyConfig(m, &c)
		errs = append(errs, err)
		// HA subscribes to a new entity's state topic, and the broker
		// answers with the message it retains there, if any.
		if d := c.device(); d != nil && len(added) > 0 {
			for _, e := range added {
				if kept, ok := h.retained[e.stateTopic()]; ok {
					kept.At = m.At
					errs = append(errs, h.applyState(e, kept))
					if e.StateTopic == "" {
						d.LastState, c.State = m.At, d
					}
				}
			}
		}
	}
	for _, e := range h.entities {
		if e.stateTopic() == m.Topic {
			errs = append(errs, h.applyState(e, m))
		}
	}
	for _, d := range h.devices {
		if d.Config.StateTopic == m.Topic {
			d.LastState, c.State = m.At, d
		}
	}
	h.recordAvailability(m.At)
	for _, d := range h.sortedDevices() {
		now := h.Available(d)
		if was, known := h.available[d]; known && was != now || !known && now {
			c.Availability = append(c.Availability, d)
		}
		h.available[d] = now
	}
	return c, errors.Join(errs...)
}

// applyConfig takes a device config (or its removal) into c, and returns
// the entities it added.
func (h *HA) applyConfig(m Message, c *Change) ([]*entity, error) {
	if m.Payload == "" {
		d, ok := h.devices[m.Topic]
		if !ok {
			return nil, nil
		}
		for id, e := range h.entities {
			if e.device == d {
				delete(h.entities, id)
			}
		}
		delete(h.devices, m.Topic)
		delete(h.available, d)
		c.Removed = d.Config.Device.Name
		return nil, nil
	}
	var cfg Config
	if err := json.Unmarshal([]byte(m.Payload), &cfg); err != nil {
		return nil, fmt.Errorf("%s: invalid discovery payload: %w", m.Topic, err)
	}
	if len(cfg.Device.Identifiers) == 0 || cfg.Origin.Name == "" {
		return nil, fmt.Errorf("%s: device config without dev.identifiers or o.name", m.Topic)
	}
	d, ok := h.devices[m.Topic]
	switch {
	case !ok:
		d = &Device{Topic: m.Topic}
		h.devices[m.Topic] = d
		c.Discovered = d
	case d.raw != m.Payload:
		c.Updated = d
	}
	d.Config, d.raw = cfg, m.Payload
	var added []*entity
	var errs []error
	for key, comp := range cfg.Components {
		if comp.UniqueID == "" {
			// Only the platform: HA drops this component from the device.
			for id, e := range h.entities {
				if e.device == d && strings.HasSuffix(id, "_"+key) {
					delete(h.entities, id)
				}
			}
			continue
		}
		if _, err := render(comp.ValueTemplate, map[string]any{}, ""); comp.ValueTemplate != plainValue && err != nil && !errors.Is(err, errMissingField) {
			errs = append(errs, fmt.Errorf("%s/%s: %w", m.Topic, key, err))
		}
		e, ok := h.entities[comp.UniqueID]
		if !ok {
			e = &entity{}
			h.entities[comp.UniqueID] = e
			added = append(added, e)
		}
		e.Component, e.device = comp, d
	}
	for _, a := range cfg.Availability {
		if _, err := availabilityPayload(a, ""); err != nil && !errors.Is(err, errNotJSON) {
			errs = append(errs, fmt.Errorf("%s: availability %s: %w", m.Topic, a.Topic, err))
		}
	}
	return added, errors.Join(errs...)
}

func (h *HA) applyState(e *entity, m Message) error {
	e.lastMsgAt = m.At
	out := m.Payload
	if e.ValueTemplate != plainValue {
		var obj map[string]any
		dec := json.NewDecoder(strings.NewReader(m.Payload))
		dec.UseNumber() // a template sees 50.0 as a float, 50 as an int
		if err := dec.Decode(&obj); err != nil {
			return fmt.Errorf("%s: state is not a JSON object: %w", m.Topic, err)
		}
		var err error
		if out, err = render(e.ValueTemplate, obj, e.value); err != nil {
			return fmt.Errorf("%s: %s: %w", m.Topic, e.UniqueID, err)
		}
	}
	switch {
	case out == "None":
		e.value = ""
	case e.numeric():
		if out == "" {
			break // HA ignores an empty state of a numeric sensor
		}
		v, perr := strconv.ParseFloat(out, 64)
		if perr != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: %s: state %q is not a number", m.Topic, e.UniqueID, out)
		}
		e.value = out
	case len(e.Options) > 0 && !slices.Contains(e.Options, out):
		return fmt.Errorf("%s: %s: %q is not one of %v", m.Topic, e.UniqueID, out, e.Options)
	default:
		e.value = out
	}
	e.record(m.At, h.stateOf(e, m.At))
	return nil
}

// recordAvailability notes an availability change of every entity.
func (h *HA) recordAvailability(at time.Time) {
	for _, e := range h.entities {
		e.record(at, h.stateOf(e, at))
	}
}

func (e *entity) record(at time.Time, state string) {
	if n := len(e.history); n > 0 && e.history[n-1].State == state {
		return
	}
	e.history = append(e.history, Sample{At: at, State: state})
}

// stateTopic is where e reads its state: its own topic, or its device's.
func (e *entity) stateTopic() string {
	if e.StateTopic != "" {
		return e.StateTopic
	}
	return e.device.Config.StateTopic
}

// stateOf is what HA shows for e at time at.
func (h *HA) stateOf(e *entity, at time.Time) string {
	switch {
	case e.Availability != nil && !h.availableOn(e.Availability, e.AvailabilityMode):
		return Unavailable
	case e.Availability == nil && !h.Available(e.device):
		return Unavailable
	case e.ExpireAfter > 0 && (e.lastMsgAt.IsZero() || at.Sub(e.lastMsgAt) > time.Duration(e.ExpireAfter)*time.Second):
		return Unavailable // HA starts an expiring sensor as expired
	case e.value == "":
		return Unknown
	}
	return e.value
}

// Available follows HA's availability modes: all, any, or (the default)
// whichever of the topics spoke last. A topic not heard from is not
// available, and a payload that is neither of the two is ignored.
func (h *HA) Available(d *Device) bool {
	return h.availableOn(d.Config.Availability, d.Config.AvailabilityMode)
}

// availableOn judges one availability list in mode.
func (h *HA) availableOn(list []Availability, mode string) bool {
	if len(list) == 0 {
		return true
	}
	ok := func(a Availability) bool {
		p, heard := h.topics[a.Topic]
		if !heard {
			return false
		}
		v, err := availabilityPayload(a, p.payload)
		return err == nil && v == a.PayloadAvailable
	}
	switch mode {
	case "all":
		return !slices.ContainsFunc(list, func(a Availability) bool { return !ok(a) })
	case "any":
		return slices.ContainsFunc(list, ok)
	}
	last := list[0]
	for _, a := range list[1:] {
		if h.topics[a.Topic].seq > h.topics[last.Topic].seq {
			last = a
		}
	}
	return ok(last)
}

// State is what HA shows for the entity with this unique_id at time at: a
// value, Unknown or Unavailable; "" if there is no such entity.
func (h *HA) State(uniqueID string, at time.Time) string {
	e, ok := h.entities[uniqueID]
	if !ok {
		return ""
	}
	return h.stateOf(e, at)
}

// Shown is State as HA's frontend displays it: a number rounded to the
// entity's suggested display precision, followed by its unit.
func (h *HA) Shown(uniqueID string, at time.Time) string {
	s := h.State(uniqueID, at)
	e, ok := h.entities[uniqueID]
	if !ok || s == Unavailable || s == Unknown {
		return s
	}
	return e.display(s)
}

// display rounds a numeric state to the suggested display precision and
// adds the unit.
func (e *entity) display(s string) string {
	if v, err := strconv.ParseFloat(s, 64); err == nil && e.Precision != nil {
		s = strconv.FormatFloat(v, 'f', *e.Precision, 64)
	}
	if e.Unit != "" {
		s += " " + e.Unit
	}
	return s
}

// Value is the entity's native value, the last state HA took from its state
// topic whatever its availability now; "" if it has none.
func (h *HA) Value(uniqueID string) string {
	if e, ok := h.entities[uniqueID]; ok {
		return e.value
	}
	return ""
}

// ShownValue is Value as the frontend would display it (see Shown); "" if
// there is none.
func (h *HA) ShownValue(uniqueID string) string {
	e, ok := h.entities[uniqueID]
	if !ok || e.value == "" {
		return ""
	}
	return e.display(e.value)
}

// History is every state the entity took, in order (expiry included only as
// it was observed at a message; use State for the state at a given time).
func (h *HA) History(uniqueID string) []Sample {
	if e, ok := h.entities[uniqueID]; ok {
		return slices.Clone(e.history)
	}
	return nil
}

// Entities lists the unique ids HA has, sorted.
func (h *HA) Entities() []string {
	ids := make([]string, 0, len(h.entities))
	for id := range h.entities {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Component returns the config of an entity.
func (h *HA) Component(uniqueID string) (Component, bool) {
	e, ok := h.entities[uniqueID]
	if !ok {
		return Component{}, false
	}
	return e.Component, true
}

// Devices lists the discovery topics of the devices HA has, sorted.
func (h *HA) Devices() []string {
	topics := make([]string, 0, len(h.devices))
	for t := range h.devices {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	return topics
}

// Find returns the first device, by discovery topic, with a component of
// this key; nil if none has one.
func (h *HA) Find(key string) *Device {
	for _, d := range h.sortedDevices() {
		if _, ok := d.Config.Components[key]; ok {
			return d
		}
	}
	return nil
}

func (h *HA) sortedDevices() []*Device {
	out := make([]*Device, 0, len(h.devices))
	for _, t := range h.Devices() {
		out = append(out, h.devices[t])
	}
	return out
}

var (
	errMissingField = errors.New("template reads a field the payload lacks")
	errNotJSON      = errors.New("payload is not JSON")
)

// plainValue takes a plain-text payload as the state.
const plainValue = "{{ value }}"

// The templates the bridge uses. Anything else is an error: extend the model
// together with the bridge.
var (
	plainField   = regexp.MustCompile(`^\{\{ value_json\.(\w+) \}\}$`)
	cutField     = regexp.MustCompile(`^\{\{ value_json\.(\w+)\[:(\d+)\] \}\}$`)
	defaultEmpty = regexp.MustCompile(`^\{\{ value_json\.(\w+) \| default\(''\) \}\}$`)
	defaultThis  = regexp.MustCompile(`^\{\{ value_json\.(\w+) \| default\(this\.state\) \}\}$`)
	onlineIf     = regexp.MustCompile(`^\{\{ 'online' if value_json\.(\w+) == 'online' else 'offline' \}\}$`)
)

// render evaluates a value template on a JSON object; current is the entity's
// state, for this.state.
func render(tpl string, obj map[string]any, current string) (string, error) {
	field := func(name string) (string, bool) {
		v, ok := obj[name]
		if !ok {
			return "", false
		}
		switch v := v.(type) {
		case string:
			return v, true
		case nil:
			return "None", true
		case bool:
			if v {
				return "True", true
			}
			return "False", true
		case json.Number:
			if !strings.ContainsAny(string(v), ".eE") {
				return string(v), true // an int
			}
			f, err := v.Float64()
			if err != nil {
				return string(v), true
			}
			return pythonFloat(f), true
		case float64:
			return pythonFloat(v), true
		}
		b, _ := json.Marshal(v)
		return string(b), true
	}
	if m := plainField.FindStringSubmatch(tpl); m != nil {
		v, ok := field(m[1])
		if !ok {
			return "", fmt.Errorf("%w: %s (HA logs a template warning)", errMissingField, m[1])
		}
		return v, nil
	}
	if m := cutField.FindStringSubmatch(tpl); m != nil {
		v, ok := field(m[1])
		if !ok {
			return "", fmt.Errorf("%w: %s (HA logs a template warning)", errMissingField, m[1])
		}
		n, _ := strconv.Atoi(m[2])
		if r := []rune(v); len(r) > n {
			v = string(r[:n])
		}
		return v, nil
	}
	if m := defaultEmpty.FindStringSubmatch(tpl); m != nil {
		v, _ := field(m[1])
		return v, nil
	}
	if m := defaultThis.FindStringSubmatch(tpl); m != nil {
		if v, ok := field(m[1]); ok {
			return v, nil
		}
		if current == "" {
			return Unknown, nil
		}
		return current, nil
	}
	return "", fmt.Errorf("template %q is not one this model knows", tpl)
}

// pythonFloat writes v as a template's str() of a float does: the shortest
// digits that read back as v, with ".0" when v is whole ("50.0", "12345.7").
func pythonFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func availabilityPayload(a Availability, payload string) (string, error) {
	if a.ValueTemplate == "" {
		return payload, nil
	}
	m := onlineIf.FindStringSubmatch(a.ValueTemplate)
	if m == nil {
		return "", fmt.Errorf("availability template %q is not one this model knows", a.ValueTemplate)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(payload), &obj); err != nil {
		return "", errNotJSON
	}
	if obj[m[1]] == "online" {
		return "online", nil
	}
	return "offline", nil
}
