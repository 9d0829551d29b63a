package demo

import (
	"fmt"
	"strings"

	"github.com/em340-bridge/em340-bridge/internal/baseline"
)

// header says what runs and where, before the story starts.
func header(device string, port int, o Options, keys bool) []string {
	b := baseline.Predecessor
	lines := []string{
		"em340-bridge demo: a simulated EM340 meter, an MQTT broker and the bridge, all in this process.",
		"What follows is what Home Assistant sees over MQTT.",
		"",
		fmt.Sprintf("  meter   simulated EM340 %s on %s, %d baud with real wire timing", meterSerial, device, baud),
		fmt.Sprintf("  broker  mqtt://127.0.0.1:%d   watch it: mosquitto_sub -p %d -t '#' -v", port, port),
		fmt.Sprintf("  bridge  polls every %s; retries a lost adapter after %s, ×%g, at most %s, and at once when it reappears",
			seconds(o.Poll)+" s", seconds(reconnectMinDelay)+" s", reconnectFactor, seconds(reconnectMaxDelay)+" s"),
		fmt.Sprintf("  before  em340d, the Python predecessor, retried at %s … s after a loss (×%g, then every %s s)",
			attemptTimes(b, 8), b.Factor, seconds(b.Max)),
	}
	var unplug []string
	if o.UnplugEvery > 0 {
		unplug = append(unplug, fmt.Sprintf("every %s s for %s s", seconds(o.UnplugEvery), seconds(o.Outage)))
	}
	if keys {
		unplug = append(unplug, "press u to unplug now, q to quit")
	} else if o.UnplugEvery <= 0 {
		unplug = append(unplug, "never (-no-unplug)")
	}
	lines = append(lines, "  unplug  "+strings.Join(unplug, "; "), "")
	return lines
}
