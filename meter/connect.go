package meter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/simonvetter/modbus"
)

// ReadIdentity reads what the meter says about itself: model code (000Bh, only
// valid as a single-word read), serial number, firmware, production year where
// present, measurement mode and system, wiring status, the largest read it takes
// and whether it has the 3-decimal totals.
func ReadIdentity(ctx context.Context, r Reader) (Identity, error) {
	var id Identity
	one := func(addr uint16, what string) (uint16, error) {
		w, err := r.ReadRegisters(ctx, addr, 1)
		if err != nil {
			return 0, fmt.Errorf("read %s (%04Xh): %w", what, addr, err)
		}
		if len(w) != 1 {
			return 0, fmt.Errorf("read %s (%04Xh): got %d registers", what, addr, len(w))
		}
		return w[0], nil
	}
	var err error
	if id.ModelCode, err = one(AddrModelCode, "model code"); err != nil {
		return id, err
	}
	serial, err := r.ReadRegisters(ctx, AddrSerialNumber, SerialNumberWords)
	if err != nil {
		return id, fmt.Errorf("read serial number: %w", err)
	}
	id.Serial = decodeSerial(serial)
	fw, err := r.ReadRegisters(ctx, AddrFirmwareVersion, 2)
	if err != nil || len(fw) != 2 {
		return id, fmt.Errorf("read firmware: %w", errors.Join(err, errWords(fw, 2)))
	}
	id.Firmware = fmt.Sprintf("%c%d", 'A'+rune(fw[0]), fw[1])
	year, err := one(AddrProductionYear, "production year")
	switch {
	case err == nil:
		id.ProductionYear = int(year)
	case !errors.Is(err, modbus.ErrIllegalDataAddress): // older meters lack 5010h
		return id, err
	}
	if id.MeasuringSystem, err = one(AddrMeasuringSystem, "measuring system"); err != nil {
		return id, err
	}
	// 1103h–1105h: measurement mode, wrong-connection help, wrong-connection status.
	settings, err := r.ReadRegisters(ctx, AddrMeasurementMode, 3)
	if err != nil || len(settings) != 3 {
		return id, fmt.Errorf("read measurement mode and wiring status: %w", errors.Join(err, errWords(settings, 3)))
	}
	id.MeasurementMode, id.WrongConnection = settings[0], settings[AddrWrongConnection-AddrMeasurementMode]
	id.MaxWords = MaxReadWords
	switch max, err := one(AddrMaxWords, "max words per read"); {
	case err == nil && max >= 1 && max <= MaxReadWords:
		id.MaxWords = max
	case err != nil && !errors.Is(err, modbus.ErrIllegalDataAddress):
		return id, err
	}
	switch _, err := r.ReadRegisters(ctx, AddrFineEnergy, FineEnergyWords); {
	case err == nil:
		id.FineEnergy = true
	case !errors.Is(err, modbus.ErrIllegalDataAddress): // exception 02: a meter from before October 2018
		return id, fmt.Errorf("probe 3-decimal totals: %w", err)
	}
	return id, nil
}

// decodeSerial takes one ASCII character from the low byte of each word.
func decodeSerial(words []uint16) string {
	var b strings.Builder
	for _, w := range words {
		if c := byte(w); c >= 0x20 && c < 0x7F {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

func errWords(w []uint16, want int) error {
	if len(w) == want {
		return nil
	}
	return fmt.Errorf("got %d registers, want %d", len(w), want)
}
