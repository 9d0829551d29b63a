package hass

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	obj := map[string]any{"v": 230.1, "whole": json.Number("50.0"), "int": json.Number("50"), "s": "B", "n": nil, "long": "abcdef"}
	for _, tc := range []struct {
		tpl, current, want string
		fails              bool
	}{
		{tpl: "{{ value_json.v }}", want: "230.1"},
		{tpl: "{{ value_json.whole }}", want: "50.0"},
		{tpl: "{{ value_json.int }}", want: "50"},
		{tpl: "{{ value_json.missing }}", fails: true},
		{tpl: "{{ value_json.v | default('') }}", want: "230.1"},
		{tpl: "{{ value_json.missing | default('') }}", want: ""},
		{tpl: "{{ value_json.s | default(this.state) }}", want: "B"},
		{tpl: "{{ value_json.missing | default(this.state) }}", current: "A", want: "A"},
		{tpl: "{{ value_json.missing | default(this.state) }}", want: Unknown},
		{tpl: "{{ value_json.n }}", want: "None"},
		{tpl: "{{ value_json.long[:3] }}", want: "abc"},
		{tpl: "{{ value_json.v | round(1) }}", fails: true},
	} {
		got, err := render(tc.tpl, obj, tc.current)
		if (err != nil) != tc.fails || got != tc.want {
			t.Errorf("render(%q) = %q, %v; want %q (fails %v)", tc.tpl, got, err, tc.want, tc.fails)
		}
	}
}

// TestEntityLifecycle: discovery, availability on all three topics (one read
// through a template), a numeric state, an ignored empty state, expiry and
// removal, as HA would record them.
func TestEntityLifecycle(t *testing.T) {
	h := New("homeassistant")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	config := `{"dev":{"identifiers":["m"]},"o":{"name":"x"},"state_topic":"b/m/state",
	  "availability":[{"topic":"b/bridge/availability","payload_available":"online","payload_not_available":"offline"},
	    {"topic":"b/bridge/link","payload_available":"online","payload_not_available":"offline","value_template":"{{ 'online' if value_json.state == 'online' else 'offline' }}"}],
	  "availability_mode":"all",
	  "cmps":{"e":{"p":"sensor","unique_id":"m_e","unit_of_measurement":"kWh","state_class":"total_increasing","value_template":"{{ value_json.e | default('') }}","expire_after":10}}}`
	steps := []struct {
		topic, payload string
		s              int
		want           string
	}{
		{"homeassistant/device/m/config", config, 0, Unavailable},
		{"b/bridge/availability", "online", 1, Unavailable},
		{"b/bridge/link", `{"state":"online"}`, 2, Unavailable}, // expired: no state yet
		{"b/m/state", `{"e":12.5}`, 3, "12.5"},
		{"b/m/state", `{}`, 4, "12.5"}, // empty render: ignored
		{"b/bridge/link", `{"state":"reconnecting"}`, 5, Unavailable},
		{"b/bridge/link", `{"state":"online"}`, 6, "12.5"},
		{"b/bridge/link", `{"state":"online"}`, 15, Unavailable}, // 11 s after the last state
	}
	for _, st := range steps {
		if _, err := h.Apply(Message{Topic: st.topic, Payload: st.payload, At: at(st.s)}); err != nil {
			t.Fatalf("at %d s: %v", st.s, err)
		}
		if got := h.State("m_e", at(st.s)); got != st.want {
			t.Errorf("at %d s after %s: state %q, want %q", st.s, st.topic, got, st.want)
		}
	}
	want := []string{Unavailable, "12.5", Unavailable, "12.5", Unavailable}
	var got []string
	for _, s := range h.History("m_e") {
		got = append(got, s.State)
	}
	if len(got) != len(want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("history %v, want %v", got, want)
		}
	}
	if _, err := h.Apply(Message{Topic: "homeassistant/device/m/config", At: at(16)}); err != nil {
		t.Fatal(err)
	}
	if ids := h.Entities(); len(ids) != 0 {
		t.Errorf("after removal HA still has %v", ids)
	}
}

func TestApplyReportsWhatHAWouldWarnAbout(t *testing.T) {
	h := New("homeassistant")
	cfg := `{"dev":{"identifiers":["m"]},"o":{"name":"x"},"state_topic":"s",
	  "cmps":{"e":{"p":"sensor","unique_id":"m_e","unit_of_measurement":"V","value_template":"{{ value_json.e }}"},
	          "k":{"p":"sensor","unique_id":"m_k","device_class":"enum","options":["A","B"],"value_template":"{{ value_json.k }}"}}}`
	if _, err := h.Apply(Message{Topic: "homeassistant/device/m/config", Payload: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, payload := range []string{`{"k":"A"}`, `{"e":"x","k":"A"}`, `{"e":1,"k":"C"}`, `not json`} {
		if _, err := h.Apply(Message{Topic: "s", Payload: payload}); err == nil {
			t.Errorf("state %s: no error, but HA would warn", payload)
		}
	}
}
