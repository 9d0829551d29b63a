package demo

import (
	"strings"
	"testing"
)

func TestWrap(t *testing.T) {
	got := wrap("  label  ", []string{"alpha", "beta", "gamma", "delta"}, 22)
	want := []string{"  label  alpha, beta,", "         gamma, delta"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}

func TestFold(t *testing.T) {
	got := fold("  1.0s  HA    ", "recovered: a reading reached HA 0.85 s after the replug", 40)
	want := []string{"  1.0s  HA    recovered: a reading", "              reached HA 0.85 s after", "              the replug"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fold = %q, want %q", got, want)
	}
}
