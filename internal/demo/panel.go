package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
)

// Component keys the demo picks out of the discovered devices.
const (
	keyLinkState  = discovery.KeyLinkState
	keyLinkCause  = discovery.KeyLinkCause
	keyReconnects = discovery.KeyReconnects
	keyLastOutage = discovery.KeyLastOutage
	keyImport     = "energy_import"
)

// keyValue is one of the few values shown live, with a short label for the
// plain lines.
type keyValue struct{ key, label string }

func keyValues() []keyValue {
	return []keyValue{
		{"voltage_l1_n", "L1"}, {"voltage_l2_n", "L2"}, {"voltage_l3_n", "L3"},
		{"power", "power"}, {"frequency", ""},
		{"energy_import", "import"}, {"energy_export", "export"},
	}
}

// valuesLine is a reading as HA received it, in one plain line.
func valuesLine(d *device) string {
	var parts []string
	for _, kv := range keyValues() {
		v := stateValue(d, kv.key)
		if v == "" {
			continue
		}
		parts = append(parts, strings.TrimSpace(kv.label+" "+v))
	}
	return "reading: " + strings.Join(parts, ", ")
}

// stateValue is one value of the device's last state payload, with its unit;
// "" if the payload lacks it.
func stateValue(d *device, key string) string {
	c, ok := d.config.Components[key]
	raw, has := d.state[d.fields[key]]
	if !ok || !has {
		return ""
	}
	v := strings.Trim(string(raw), `"`)
	if c.Unit != "" {
		v += " " + c.Unit
	}
	return v
}

// linkSummary is the bridge device's link entities in a few words, e.g.
// "reconnecting (adapter missing)" or "online (reconnects 1, last outage 6.0 s)".
func linkSummary(h *hass, bridge *device) string {
	if !h.isAvailable(bridge) {
		return "unavailable"
	}
	state := h.value(bridge, keyLinkState)
	var detail []string
	if cause := h.value(bridge, keyLinkCause); cause != "" && cause != "unknown" && state != "online" {
		detail = append(detail, cause)
	}
	if n := h.value(bridge, keyReconnects); n != "" && n != "0" && n != "unknown" && state == "online" {
		detail = append(detail, "reconnects "+n)
		if o := h.value(bridge, keyLastOutage); o != "" && o != "unknown" {
			detail = append(detail, "last outage "+o)
		}
	}
	if len(detail) == 0 {
		return state
	}
	return state + " (" + strings.Join(detail, ", ") + ")"
}

// panel is the live view on a terminal: what HA shows now, and the controls.
func panel(h *hass, c *cycle, nextUnplug time.Time, keys bool, now time.Time, width int) []string {
	rule := func(title string) string {
		return "── " + title + " " + strings.Repeat("─", max(0, min(width, 100)-len([]rune(title))-5))
	}
	lines := []string{rule("Home Assistant now")}
	if m := h.find(keyImport); m != nil {
		status := "available"
		if !h.isAvailable(m) {
			status = "unavailable"
		}
		if !m.stateAt.IsZero() {
			status += fmt.Sprintf(", last reading %s s ago", seconds(now.Sub(m.stateAt)))
		}
		lines = append(lines, fmt.Sprintf("%s: %s", m.config.Device.Name, status))
		var cells []string
		for _, kv := range keyValues() {
			if c, ok := m.config.Components[kv.key]; ok {
				cells = append(cells, fmt.Sprintf("%-14s %-16s", c.Name, h.value(m, kv.key)))
			}
		}
		for i := 0; i < len(cells); i += 3 {
			lines = append(lines, "  "+strings.TrimRight(strings.Join(cells[i:min(i+3, len(cells))], " "), " "))
		}
	} else {
		lines = append(lines, "waiting for the meter to be discovered …")
	}
	if b := h.find(keyLinkState); b != nil {
		lines = append(lines, fmt.Sprintf("%s: link %s", b.config.Device.Name, linkSummary(h, b)))
	}
	lines = append(lines, rule("demo"))
	var plug string
	switch c.phase {
	case unplugged:
		plug = fmt.Sprintf("adapter unplugged for %s s, back in at %s s", seconds(now.Sub(c.unpluggedAt)), seconds(c.outage))
	case recovering:
		plug = fmt.Sprintf("adapter plugged back in %s s ago, waiting for a reading", seconds(now.Sub(c.pluggedAt)))
	default:
		plug = "adapter plugged in"
		if !nextUnplug.IsZero() {
			left := max(0, nextUnplug.Sub(now))
			plug += fmt.Sprintf(", next unplug in %s s", seconds((left + time.Second - 1).Truncate(time.Second)))
		}
	}
	lines = append(lines, plug)
	if keys {
		lines = append(lines, "keys: u unplug now · q quit")
	}
	return lines
}
