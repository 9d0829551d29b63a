package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/hass"
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

// valuesLine is the meter's last state as HA took it, in one plain line.
func valuesLine(h *hass.HA, d *hass.Device) string {
	var parts []string
	for _, kv := range keyValues() {
		v := h.ShownValue(d.Config.Components[kv.key].UniqueID)
		if v == "" {
			continue
		}
		parts = append(parts, strings.TrimSpace(kv.label+" "+v))
	}
	return "reading: " + strings.Join(parts, ", ")
}

// shown is what HA shows at time at for the device's entity of this key.
func shown(h *hass.HA, d *hass.Device, key string, at time.Time) string {
	c, ok := d.Config.Components[key]
	if !ok {
		return ""
	}
	return h.Shown(c.UniqueID, at)
}

// linkSummary is the bridge device's link entities in a few words, e.g.
// "reconnecting (adapter missing)" or "online (reconnects 1, last outage 6.0 s)".
func linkSummary(h *hass.HA, bridge *hass.Device, at time.Time) string {
	if !h.Available(bridge) {
		return hass.Unavailable
	}
	known := func(v string) bool { return v != "" && v != hass.Unknown }
	state := shown(h, bridge, keyLinkState, at)
	var detail []string
	if cause := shown(h, bridge, keyLinkCause, at); known(cause) && state != "online" {
		detail = append(detail, cause)
	}
	if n := shown(h, bridge, keyReconnects, at); known(n) && n != "0" && state == "online" {
		detail = append(detail, "reconnects "+n)
		if o := shown(h, bridge, keyLastOutage, at); known(o) {
			detail = append(detail, "last outage "+o)
		}
	}
	if len(detail) == 0 {
		return state
	}
	return state + " (" + strings.Join(detail, ", ") + ")"
}

// panel is the live view on a terminal: what HA shows now, and the controls.
func panel(h *hass.HA, c *cycle, nextUnplug time.Time, keys bool, now time.Time, width int) []string {
	rule := func(title string) string {
		return "── " + title + " " + strings.Repeat("─", max(0, min(width, 100)-len([]rune(title))-5))
	}
	lines := []string{rule("Home Assistant now")}
	if m := h.Find(keyImport); m != nil {
		status := "available"
		if !h.Available(m) {
			status = "unavailable"
		}
		if !m.LastState.IsZero() {
			status += fmt.Sprintf(", last reading %s s ago", seconds(now.Sub(m.LastState)))
		}
		lines = append(lines, fmt.Sprintf("%s: %s", m.Config.Device.Name, status))
		var cells []string
		for _, kv := range keyValues() {
			if c, ok := m.Config.Components[kv.key]; ok {
				cells = append(cells, fmt.Sprintf("%-14s %-16s", c.Name, h.Shown(c.UniqueID, now)))
			}
		}
		for i := 0; i < len(cells); i += 3 {
			lines = append(lines, "  "+strings.TrimRight(strings.Join(cells[i:min(i+3, len(cells))], " "), " "))
		}
	} else {
		lines = append(lines, "waiting for the meter to be discovered …")
	}
	if b := h.Find(keyLinkState); b != nil {
		lines = append(lines, fmt.Sprintf("%s: link %s", b.Config.Device.Name, linkSummary(h, b, now)))
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
