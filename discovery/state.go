package discovery

import (
	"math"
	"strconv"
	"strings"

	"github.com/em340-bridge/em340-bridge/meter"
)

// State is the JSON object published on the meter state topic for one snapshot:
// each value of the reading under its register key, plus the identity
// diagnostics. Numbers carry exactly the register's decimals (230.1, never
// 230.10000000000002); enums carry their option text. A value missing from the
// reading (rejected by validation) is missing here too, never zero-filled: HA
// then keeps the last good value, and a bogus 0 never reaches the energy
// statistics (DISCOVERY.md §13). Keys follow the register table's order.
func State(r meter.Reading, id meter.Identity) []byte {
	var obj jsonObject
	for _, v := range r.Values {
		key := v.Register.Key
		if len(v.Register.Options) > 0 {
			if text := v.Text(); text != "" {
				obj.add(key, mustMarshal(text))
			}
			continue
		}
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			continue // not JSON, and HA would reject it anyway
		}
		obj.add(key, []byte(formatDecimal(v.Value, v.Register.Precision(r.Fine))))
	}
	obj.add(KeyMeasurementMode, mustMarshal(id.MeasurementModeName()))
	obj.add(KeyMeasuringSystem, mustMarshal(id.MeasuringSystemName()))
	obj.add(KeyWiringStatus, mustMarshal(id.WiringStatus()))
	return obj.bytes()
}

// StateMessage is the snapshot for the meter state topic. Not retained: the
// bridge republishes on every poll and after HA's birth, and a retained snapshot
// would outlive the meter it describes.
func StateMessage(t Topics, r meter.Reading, id meter.Identity) Message {
	return Message{Topic: t.MeterState(), Payload: State(r, id), QoS: discoveryQoS}
}

// formatDecimal writes v with exactly decimals digits after the point and
// without a sign on zero ("-0.0" reads as a glitch to a person).
func formatDecimal(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.HasPrefix(s, "-") && strings.Trim(s[1:], "0.") == "" {
		return s[1:]
	}
	return s
}

// jsonObject builds a JSON object whose members keep insertion order, so the
// payload reads like the register table. A repeated key keeps its first value.
type jsonObject struct {
	buf  []byte
	seen map[string]bool
}

func (o *jsonObject) add(key string, value []byte) {
	if o.seen[key] {
		return
	}
	if o.seen == nil {
		o.seen = make(map[string]bool)
	}
	o.seen[key] = true
	if len(o.buf) == 0 {
		o.buf = append(o.buf, '{')
	} else {
		o.buf = append(o.buf, ',')
	}
	o.buf = append(o.buf, mustMarshal(key)...)
	o.buf = append(o.buf, ':')
	o.buf = append(o.buf, value...)
}

func (o *jsonObject) bytes() []byte {
	if len(o.buf) == 0 {
		return []byte("{}")
	}
	return append(o.buf, '}')
}
