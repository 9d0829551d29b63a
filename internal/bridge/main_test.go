package bridge_test

import (
	"io"
	"log"
	"os"
	"testing"
)

// TestMain quiets goburrow/serial, which reports closing an unplugged adapter
// ("could not restore setting") through the standard log package.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
