package meter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/simonvetter/modbus"
)

// readIdentity reads what the meter says about itself in the fewest requests
// the register map allows: six, five when the caller has just read the serial
// (serial != ""). No two of them can merge: 0302h–0303h, 1002h–1006h and
// 1103h–1105h are each bounded by undefined addresses (exception 02), so are
// 5000h–5006h and 5010h (5007h–500Fh), and 000Bh means the model code only
// when read alone. Each is needed before the first snapshot:
//
//   - 000Bh model code: the word order of every 32-bit value (model 340) and the
//     model's name.
//   - 5000h–5006h serial number: which meter answers, the device it is.
//   - 0302h–0303h firmware and 5010h production year: the device's description.
//   - 1002h–1006h measuring system, CT and VT ratios (readSystem): which phases
//     exist, so what is polled, and the range of every value.
//   - 1103h–1105h measurement mode and wiring status (1104h, the wiring help,
//     lies between): whether export exists, whether a negative power is valid.
//
// Not read: 2004h, the largest read, which the document says reads 50 — the
// plan starts at MaxReadWords and shrinks when the meter answers exception 03
// — and the 3-decimal probe, since the first snapshot reads table 2.5 anyway
// (FineEnergy is assumed until it answers exception 02).
func readIdentity(ctx context.Context, r Reader, serial string) (Identity, error) {
	id := Identity{Serial: serial, MaxWords: MaxReadWords, FineEnergy: true}
	model, err := readWords(ctx, r, AddrModelCode, 1, "model code")
	if err != nil {
		return id, err
	}
	id.ModelCode = model[0]
	if id.Serial == "" {
		if id.Serial, err = readSerial(ctx, r); err != nil {
			return id, err
		}
	}
	if err := readSettings(ctx, r, &id); err != nil {
		return id, err
	}
	switch year, err := readWords(ctx, r, AddrProductionYear, 1, "production year"); {
	case err == nil:
		id.ProductionYear = int(year[0])
	case !errors.Is(err, modbus.ErrIllegalDataAddress): // meters built before October 2018 lack 5010h
		return id, err
	}
	return id, nil
}

// readSettings reads what may differ between two connections of the same
// meter: firmware, measuring system and ratios, measurement mode and wiring.
func readSettings(ctx context.Context, r Reader, id *Identity) error {
	fw, err := readWords(ctx, r, AddrFirmwareVersion, 2, "firmware")
	if err != nil {
		return err
	}
	id.Firmware = fmt.Sprintf("%c%d", 'A'+rune(fw[0]), fw[1])
	if err := readSystem(ctx, r, id); err != nil {
		return err
	}
	// 1103h–1105h: measurement mode, wrong-connection help, wrong-connection status.
	mode, err := readWords(ctx, r, AddrMeasurementMode, 3, "measurement mode and wiring status")
	if err != nil {
		return err
	}
	id.MeasurementMode, id.WrongConnection = mode[0], mode[AddrWrongConnection-AddrMeasurementMode]
	return nil
}

// systemWords is 1002h–1006h: measuring system, CT ratio, VT ratio.
const systemWords = AddrVTRatio + 2 - AddrMeasuringSystem

// readSystem reads the measuring system with the CT and VT ratios in one
// request, the cost of the measuring system alone; a meter that answers that
// with exception 02 gets 1002h alone and ratios of 1.
func readSystem(ctx context.Context, r Reader, id *Identity) error {
	id.CTRatio, id.VTRatio = 1, 1
	words, err := readWords(ctx, r, AddrMeasuringSystem, systemWords, "measuring system and CT/VT ratios")
	if errors.Is(err, modbus.ErrIllegalDataAddress) {
		words, err = readWords(ctx, r, AddrMeasuringSystem, 1, "measuring system")
	}
	if err != nil {
		return err
	}
	id.MeasuringSystem = words[0]
	if len(words) == int(systemWords) {
		id.CTRatio = ratio(words[AddrCTRatio-AddrMeasuringSystem:][:2], id.MSWFirst())
		id.VTRatio = ratio(words[AddrVTRatio-AddrMeasuringSystem:][:2], id.MSWFirst())
	}
	return nil
}

// ratio decodes a transformer ratio (UINT32, ratio*10). One outside the
// document's 10..10000 is no ratio the meter can be set to: 1.
func ratio(words []uint16, mswFirst bool) float64 {
	raw, err := rawValue(UInt32, words, mswFirst)
	if err != nil || raw < 10 || raw > 10000 {
		return 1
	}
	return float64(raw) / 10
}

func readSerial(ctx context.Context, r Reader) (string, error) {
	words, err := readWords(ctx, r, AddrSerialNumber, SerialNumberWords, "serial number")
	if err != nil {
		return "", err
	}
	return decodeSerial(words), nil
}

// readWords reads n registers and checks that n came back.
func readWords(ctx context.Context, r Reader, addr, n uint16, what string) ([]uint16, error) {
	words, err := r.ReadRegisters(ctx, addr, n)
	if err != nil {
		return nil, fmt.Errorf("read %s (%04Xh+%d): %w", what, addr, n, err)
	}
	if len(words) != int(n) {
		return nil, fmt.Errorf("read %s (%04Xh+%d): got %d registers", what, addr, n, len(words))
	}
	return words, nil
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
