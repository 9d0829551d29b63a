// Package addon turns the Home Assistant add-on's options and the
// Supervisor's MQTT service into the bridge's EM340_* environment.
package addon
