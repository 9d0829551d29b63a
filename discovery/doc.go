// Package discovery turns meter descriptions and bridge state into Home Assistant
// MQTT discovery and state payloads; it does no I/O.
package discovery

// Why device-based discovery (<prefix>/device/<object_id>/config, HA ≥ 2024.11)
// rather than one config topic per entity:
//   - one retained message per HA device instead of ~50, so startup, HA birth and
//     clean-up publish and clear two topics, not a hundred;
//   - the device and all its entities change atomically: HA never sees half of an
//     updated register table;
//   - a component is dropped by its key inside the same message
//     (WithRemovedComponents), and a whole device by one retained empty payload on
//     one topic (Removal).
//
// Every topic and identifier is derived in topics.go from the base topic, the
// discovery prefix and the meter's device id, so the bridge and the tests use the
// same strings.
