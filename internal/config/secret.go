package config

import (
	"fmt"
	"log/slog"
)

// Secret is a credential. Every way of printing it (fmt verbs, slog, JSON)
// shows "[redacted]" instead, so a whole Config can be logged safely; only
// Reveal gives the value, for handing it to the MQTT client.
type Secret string

const redacted = "[redacted]"

// Reveal returns the credential itself.
func (s Secret) Reveal() string { return string(s) }

// String tells set from unset without showing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format covers every fmt verb, including the ones (%d, %x …) that would
// otherwise bypass String.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, s.String()) }

// GoString covers callers that use fmt.GoStringer directly.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue keeps the credential out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the credential out of JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
