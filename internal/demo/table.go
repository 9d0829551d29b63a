package demo

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/meter"
)

// deviceTable describes a discovered device as HA's device page would: its
// name and model, then its entities grouped by device class and unit, the
// diagnostic ones last.
func deviceTable(d *hass.Device, width int) []string {
	dev := d.Config.Device
	var about []string
	if dev.Manufacturer != "" || dev.Model != "" {
		about = append(about, strings.TrimSpace(dev.Manufacturer+" "+dev.Model))
	}
	if dev.SerialNumber != "" {
		about = append(about, "serial "+dev.SerialNumber)
	}
	if dev.SWVersion != "" {
		about = append(about, "version "+dev.SWVersion)
	}
	lines := []string{fmt.Sprintf("discovered device %q (%s): %d entities", dev.Name, strings.Join(about, ", "), len(d.Config.Components))}
	groups := entityGroups(d)
	labelWidth := 0
	for _, g := range groups {
		labelWidth = max(labelWidth, len(g.label))
	}
	for _, g := range groups {
		lines = append(lines, wrap(fmt.Sprintf("%16s%-*s  ", "", labelWidth, g.label), g.names, width)...)
	}
	return lines
}

// entityGroup is the entities of one kind ("energy (kWh)"), by name.
type entityGroup struct {
	label string
	names []string
}

func entityGroups(d *hass.Device) []*entityGroup {
	var groups []*entityGroup
	byLabel := map[string]*entityGroup{}
	for _, k := range sortedKeys(d) {
		c := d.Config.Components[k]
		label, name := entityKind(c), c.Name
		if label == diagnostic && c.Unit != "" {
			name += " (" + c.Unit + ")"
		}
		g := byLabel[label]
		if g == nil {
			g = &entityGroup{label: label}
			byLabel[label] = g
			groups = append(groups, g)
		}
		g.names = append(g.names, name)
	}
	last := func(g *entityGroup) int {
		if g.label == diagnostic {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(groups, func(a, b *entityGroup) int { return cmp.Compare(last(a), last(b)) })
	return groups
}

const diagnostic = "diagnostic"

// entityKind is how an entity is grouped: "energy (kWh)", "enum",
// "diagnostic", or "text".
func entityKind(c hass.Component) string {
	class := strings.ReplaceAll(c.DeviceClass, "_", " ")
	switch {
	case c.EntityCategory == diagnostic:
		return diagnostic
	case c.DeviceClass != "" && c.Unit != "":
		return class + " (" + c.Unit + ")"
	case c.Unit != "":
		return "(" + c.Unit + ")"
	case c.DeviceClass != "":
		return class
	}
	return "text"
}

// sortedKeys orders a device's components as the meter's register table
// does (a device config is a JSON map, so its order is lost, and the table's
// reads better), then the rest by name.
func sortedKeys(d *hass.Device) []string {
	order := map[string]int{}
	for i, r := range meter.Registers() {
		order[r.Key] = i
	}
	keys := make([]string, 0, len(d.Config.Components))
	for k := range d.Config.Components {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		ia, oka := order[a]
		ib, okb := order[b]
		switch {
		case oka && okb:
			return cmp.Compare(ia, ib)
		case oka != okb:
			if oka {
				return -1
			}
			return 1
		}
		return cmp.Compare(d.Config.Components[a].Name, d.Config.Components[b].Name)
	})
	return keys
}
