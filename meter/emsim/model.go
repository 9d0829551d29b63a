package emsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
)

// The physics behind the values. Per phase the model draws a voltage around
// 230 V, a household load and a power factor that wander slowly, and, in
// common for the three phases, a solar export that turns the net power
// negative for about 30 % of a 20-minute (simulated) cycle. Everything else is
// derived so that the values agree: L-L from L-N at 120°, Q from P and PF,
// S = √(P²+Q²), I = S/V, system values as sums and means, energy as the
// integral of power.

// Register keys the model knows. They name values of meter.Registers(); the
// addresses come from that table only.
const (
	keyVoltageLN       = "voltage_ln"
	keyVoltageLL       = "voltage_ll"
	keyPower           = "power"
	keyApparentPower   = "apparent_power"
	keyReactivePower   = "reactive_power"
	keyPowerFactor     = "power_factor"
	keyPhaseSequence   = "phase_sequence"
	keyFrequency       = "frequency"
	keyDemand          = "power_demand"
	keyDemandPeak      = "power_demand_peak"
	keyImport          = "energy_import"
	keyExport          = "energy_export"
	keyReactiveImport  = "reactive_energy_import"
	keyReactiveExport  = "reactive_energy_export"
	keyImportPartial   = "energy_import_partial"
	keyReactivePartial = "reactive_energy_import_partial"
	keyTariff1         = "energy_import_tariff_1"
	keyTariff2         = "energy_import_tariff_2"
)

// Per-phase keys, by phase index 0..2.
func keyPhaseVoltage(i int) string  { return fmt.Sprintf("voltage_l%d_n", i+1) }
func keyLineVoltage(i int) string   { return fmt.Sprintf("voltage_l%d_l%d", i+1, (i+1)%3+1) }
func keyCurrent(i int) string       { return fmt.Sprintf("current_l%d", i+1) }
func keyPhasePower(i int) string    { return fmt.Sprintf("power_l%d", i+1) }
func keyPhaseApparent(i int) string { return fmt.Sprintf("apparent_power_l%d", i+1) }
func keyPhaseReactive(i int) string { return fmt.Sprintf("reactive_power_l%d", i+1) }
func keyPhasePF(i int) string       { return fmt.Sprintf("power_factor_l%d", i+1) }
func keyPhaseImport(i int) string   { return fmt.Sprintf("energy_import_l%d", i+1) }

// phaseKeys are the keys of one phase's values, worked out once.
type phaseKeys struct {
	voltage, line, current, power, apparent, reactive, pf, imp string
}

func keysOfPhase(i int) phaseKeys {
	return phaseKeys{voltage: keyPhaseVoltage(i), line: keyLineVoltage(i), current: keyCurrent(i), power: keyPhasePower(i),
		apparent: keyPhaseApparent(i), reactive: keyPhaseReactive(i), pf: keyPhasePF(i), imp: keyPhaseImport(i)}
}

const (
	refreshEvery   = 100 * time.Millisecond // the meter's measurement cycle (real time)
	maxStep        = 10.0                   // simulated seconds per integration step
	maxSteps       = 1000                   // beyond this a long gap is integrated coarsely
	solarPeriod    = 1200.0                 // simulated seconds
	wattsPerKilo   = 1000.0
	secondsPerHour = 3600.0
)

// initialCounter is the energy total a fresh simulator starts from (kWh,
// kvarh): per-phase and tariff counters add up to the total.
func initialCounter(key string) float64 {
	switch key {
	case keyImport:
		return 12345.678
	case keyReactiveImport:
		return 2345.678
	case keyExport:
		return 3456.789
	case keyReactiveExport:
		return 456.789
	case keyImportPartial:
		return 123.456
	case keyReactivePartial:
		return 23.456
	case keyPhaseImport(0), keyPhaseImport(1), keyPhaseImport(2):
		return 4115.226
	case keyTariff1:
		return 9876.543
	case keyTariff2:
		return 2469.135
	}
	return 0
}

// conditions are the meter settings the physics depends on.
type conditions struct {
	mode          uint16  // meter.MeasurementModeA or B
	tariff        int     // 1 or 2
	demandMinutes float64 // integration time of the demand
	phases        int     // phases the measuring system measures: 3, 2 (2-phase + N) or 1
}

// model holds the simulated values. It is not safe for concurrent use: the
// Sim guards it with its mutex.
type model struct {
	static bool
	scale  float64
	rng    *rand.Rand
	totals map[string]bool // keys of the table's energy counters
	phases [3]phaseKeys

	last    time.Time          // real time of the last refresh
	t       float64            // simulated seconds since start
	out     map[string]float64 // values being served, by key, in the register's unit
	counter map[string]float64 // energy counters, by key
	held    map[string]float64 // values set by a test, by key
	demand  float64
	peak    float64
	dirty   bool // recompute at the next refresh even within the cycle
}

func newModel(regs []meter.Register, static bool, scale float64, seed uint64, c conditions, now time.Time) *model {
	m := &model{
		static: static, scale: scale, rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)),
		totals: map[string]bool{}, last: now,
		out: map[string]float64{}, counter: map[string]float64{}, held: map[string]float64{},
		phases: [3]phaseKeys{keysOfPhase(0), keysOfPhase(1), keysOfPhase(2)},
	}
	for _, r := range regs {
		if r.Total {
			m.totals[r.Key] = true
			m.counter[r.Key] = initialCounter(r.Key)
		}
	}
	m.instantaneous(0, c, false)
	m.demand = math.Max(m.out[keyPower], 0)
	m.peak = m.demand*1.25 + 500
	m.publish(c)
	return m
}

// refresh brings the values to now: at most once per measurement cycle unless
// something changed, integrating energy over the simulated time that passed.
func (m *model) refresh(now time.Time, c conditions) {
	if m.static {
		m.instantaneous(0, c, false)
		m.publish(c)
		return
	}
	elapsed := now.Sub(m.last)
	if elapsed < refreshEvery && !m.dirty {
		return
	}
	m.dirty = false
	if elapsed < 0 {
		elapsed = 0
	}
	dt := elapsed.Seconds() * m.scale
	steps := max(1, min(maxSteps, int(math.Ceil(dt/maxStep))))
	for k := 1; k <= steps; k++ {
		m.instantaneous(m.t+dt*float64(k)/float64(steps), c, true)
		m.integrate(dt/float64(steps), c)
	}
	m.t += dt
	m.last = now
	m.publish(c)
}

func (m *model) noise(sd float64, on bool) float64 {
	if !on {
		return 0
	}
	return m.rng.NormFloat64() * sd
}

// instantaneous computes the measured values at simulated time t into out.
func (m *model) instantaneous(t float64, c conditions, noisy bool) {
	wave := func(period, phase float64) float64 { return math.Sin(2*math.Pi*t/period + phase) }
	hold := func(key string, v float64) float64 {
		if h, ok := m.held[key]; ok {
			return h
		}
		return v
	}
	modeB := c.mode == meter.MeasurementModeB
	solar := 1000 * math.Max(0, wave(solarPeriod, 0))
	var v, p, q, s [3]float64
	for i, k := range m.phases {
		if i >= c.phases { // not measured: nothing there; publish serves 0 (unmeasured)
			continue
		}
		ph := float64(i) * 2 * math.Pi / 3
		v[i] = hold(k.voltage, 230+2.5*wave(1800, ph)+m.noise(0.3, noisy))
		load := 600 + 300*wave(900, ph) + 120*wave(137, 2*ph) + m.noise(10, noisy)
		p[i] = hold(k.power, load-solar)
		pf := math.Abs(hold(k.pf, 0.95+0.035*wave(700, ph)))
		if !modeB {
			p[i] = math.Abs(p[i]) // easy connection: power is always positive
		}
		if pf > 0 && pf <= 1 {
			q[i] = math.Abs(p[i]) * math.Sqrt(1-pf*pf) / pf
		}
		if modeB && p[i] < 0 {
			q[i] = -q[i]
		}
		s[i] = math.Hypot(p[i], q[i])
		m.out[k.voltage] = v[i]
		m.out[k.power] = p[i]
		m.out[k.reactive] = q[i]
		m.out[k.apparent] = s[i]
		m.out[k.pf] = ratio(p[i], s[i])
		m.out[k.current] = math.Copysign(ratio(s[i], v[i]), p[i])
	}
	var sumLL float64
	lines := 0
	for i, k := range m.phases {
		a, b := v[i], v[(i+1)%3]
		m.out[k.line] = 0
		if i >= c.phases || (i+1)%3 >= c.phases {
			continue
		}
		ll := math.Sqrt(a*a + b*b + a*b) // phasors 120° apart
		m.out[k.line] = ll
		sumLL += ll
		lines++
	}
	m.out[keyVoltageLN] = (v[0] + v[1] + v[2]) / float64(max(c.phases, 1))
	m.out[keyVoltageLL] = 0
	if lines > 0 {
		m.out[keyVoltageLL] = sumLL / float64(lines)
	}
	m.out[keyPower] = p[0] + p[1] + p[2]
	m.out[keyReactivePower] = q[0] + q[1] + q[2]
	m.out[keyApparentPower] = s[0] + s[1] + s[2]
	m.out[keyPowerFactor] = ratio(m.out[keyPower], m.out[keyApparentPower])
	m.out[keyPhaseSequence] = 0
	m.out[keyFrequency] = 50 + 0.03*wave(300, 0) + m.noise(0.005, noisy)
	for key, h := range m.held { // anything else set by a test wins over the physics
		if !m.totals[key] {
			m.out[key] = h
		}
	}
}

// ratio is a/b, 1 when there is nothing to divide (no load: PF reads 1).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 1
	}
	return a / b
}

// integrate adds dt simulated seconds of the current power to the counters
// and updates the demand.
func (m *model) integrate(dt float64, c conditions) {
	h := dt / secondsPerHour
	add := func(key string, watts float64) {
		if _, held := m.held[key]; !held && watts > 0 {
			if _, ok := m.counter[key]; ok {
				m.counter[key] += watts / wattsPerKilo * h
			}
		}
	}
	p, q := m.out[keyPower], m.out[keyReactivePower]
	tariff := keyTariff1
	if c.tariff == 2 {
		tariff = keyTariff2
	}
	add(keyImport, p)
	add(keyImportPartial, p)
	add(tariff, p)
	add(keyExport, -p)
	add(keyReactiveImport, q)
	add(keyReactivePartial, q)
	add(keyReactiveExport, -q)
	for _, k := range m.phases {
		add(k.imp, m.out[k.power])
	}
	tau := math.Max(c.demandMinutes, 1) * 60
	m.demand += (math.Max(p, 0) - m.demand) * (1 - math.Exp(-dt/tau))
	m.peak = math.Max(m.peak, m.demand)
}

// publish copies counters and demand into the served values.
func (m *model) publish(c conditions) {
	m.out[keyDemand], m.out[keyDemandPeak] = m.demand, m.peak
	for key, v := range m.counter {
		m.out[key] = v
	}
	if c.mode != meter.MeasurementModeB { // mode A counts no export
		m.out[keyExport], m.out[keyReactiveExport] = 0, 0
	}
	for key, h := range m.held {
		m.out[key] = h
	}
	m.unmeasured(c)
}

// set holds a value; for an energy counter it also becomes the counter's value.
func (m *model) set(key string, v float64) {
	m.held[key] = v
	if m.totals[key] {
		m.counter[key] = v
	}
	m.dirty = true
}

// release lets a held value move again; a counter continues from where it was held.
func (m *model) release(key string) {
	delete(m.held, key)
	m.dirty = true
}

// resetPartial is command 4000h: partial and tariff counters and the demand peak.
func (m *model) resetPartial() {
	for _, key := range []string{keyImportPartial, keyReactivePartial, keyTariff1, keyTariff2} {
		if _, ok := m.counter[key]; ok {
			m.counter[key] = 0
			delete(m.held, key)
		}
	}
	m.peak = m.demand
	delete(m.held, keyDemandPeak)
	m.dirty = true
}

// resetTotals is command 4001h: every energy counter.
func (m *model) resetTotals() {
	for key := range m.counter {
		m.counter[key] = 0
		delete(m.held, key)
	}
	m.dirty = true
}
