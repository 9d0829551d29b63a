package meter

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// familyFromTheDocument is the model codes of REGISTERS.md (identity table,
// 000Bh), written out from the document: code, name, 32-bit word order.
var familyFromTheDocument = []struct {
	code     uint16
	name     string
	mswFirst bool
}{
	{341, "EM340", false},
	{340, "EM340 (engineering sample)", true},
	{346, "EM341", false},
	{345, "ET340", false},
	{331, "EM330", false},
	{332, "EM330", false},
	{355, "EM331", false},
	{335, "ET330", false},
	{336, "ET330", false},
}

func TestModelsFollowTheDocument(t *testing.T) {
	if len(Models()) != len(familyFromTheDocument) {
		t.Errorf("%d models in the table, the document lists %d", len(Models()), len(familyFromTheDocument))
	}
	for _, want := range familyFromTheDocument {
		m := ModelOf(want.code)
		id := Identity{ModelCode: want.code}
		if m.Name != want.name || id.Model() != want.name || m.MSWFirst != want.mswFirst || id.MSWFirst() != want.mswFirst || !m.Known {
			t.Errorf("model %d: %+v (Identity says %q, MSW first %v), want %q, MSW first %v",
				want.code, m, id.Model(), id.MSWFirst(), want.name, want.mswFirst)
		}
	}
	if m := ModelOf(123); m.Name != "unknown model 123" || m.MSWFirst || m.Known {
		t.Errorf("unknown code: %+v, want the EM340's layout under a name a user can report", m)
	}
}

// Each model code connects under its name and decodes in its word order; an
// unknown code reads as an EM340 and is logged once.
func TestEachModelReadsInItsWordOrder(t *testing.T) {
	codes := []uint16{123}
	for _, m := range familyFromTheDocument {
		codes = append(codes, m.code)
	}
	for _, code := range codes {
		t.Run(ModelOf(code).Name, func(t *testing.T) {
			ctx := context.Background()
			vals := typicalValues()
			f := newFixture(code, true, vals)
			var log bytes.Buffer
			m := New(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			restoreTotals(m, vals)
			id, err := m.Connect(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if id.Model() != ModelOf(code).Name {
				t.Errorf("model %q, want %q", id.Model(), ModelOf(code).Name)
			}
			reading, err := m.Read(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]float64{"voltage_l1_n": 230.4, "power": -1234.5, "energy_import": 12345.678} {
				if got, ok := reading.Get(key); !ok || got != want {
					t.Errorf("%s = %v (%v), want %v", key, got, ok, want)
				}
			}
			if _, err := m.Connect(ctx, f); err != nil { // a reconnect does not log it again
				t.Fatal(err)
			}
			wantLogged := 0
			if code == 123 {
				wantLogged = 1
			}
			if n := strings.Count(log.String(), "unknown model code"); n != wantLogged {
				t.Errorf("unknown model logged %d times, want %d:\n%s", n, wantLogged, log.String())
			}
		})
	}
}
