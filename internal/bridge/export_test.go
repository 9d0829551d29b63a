package bridge

import "context"

// Seams for the tests of package bridge_test, which run the bridge through
// internal/bridgetest (an import cycle for tests inside package bridge).

// HealthTick is how often the publisher reports its health.
const HealthTick = healthTick

// SetBeforePoll makes the poll loop call hook before every poll: a test can
// stall the loop there, as a wedged driver would.
func SetBeforePoll(o *Options, hook func(context.Context)) { o.beforePoll = hook }
