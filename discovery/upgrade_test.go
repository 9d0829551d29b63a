package discovery

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/meter"
)

// TestUpgradeKeepsEntityIDs: an existing single-meter installation keeps every
// discovery topic, state and availability topic, unique_id and entity id it
// had before several meters per bridge (testdata/entity-ids-16eae21.txt);
// components may be added, none renamed or dropped.
func TestUpgradeKeepsEntityIDs(t *testing.T) {
	f, err := os.Open("testdata/entity-ids-16eae21.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	topics := mustTopics(t, "em340", "homeassistant", "235411W")
	meterCfg := MeterDevice(topics, testOrigin(t), testIdentity(), meter.Registers(), testExpire)
	bridgeCfg := BridgeDevice(topics, testOrigin(t))
	have := map[string]bool{
		"config " + meterCfg.Topic: true, "config " + bridgeCfg.Topic: true,
		"topic " + meterCfg.StateTopic: true, "topic " + bridgeCfg.StateTopic: true,
	}
	for _, cfg := range []DeviceConfig{meterCfg, bridgeCfg} {
		for _, a := range cfg.Availability {
			have["topic "+a.Topic] = true
		}
		for key, c := range cfg.Components {
			have[key+" "+c.UniqueID+" "+c.DefaultEntityID] = true
		}
	}

	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines++
		if !have[line] {
			t.Errorf("an upgrade loses %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines < 50 {
		t.Fatalf("read %d lines of the released ids; the fixture is incomplete", lines)
	}
}
