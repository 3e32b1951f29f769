package exec

import (
	"context"
	"fmt"
	"sync"
	"time"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// clock is the time the prober sees; tests drive a fake one.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Short names for the health states.
const (
	healthNone      = shoalpb.HealthState_HEALTH_NONE
	healthStarting  = shoalpb.HealthState_HEALTH_STARTING
	healthHealthy   = shoalpb.HealthState_HEALTH_HEALTHY
	healthUnhealthy = shoalpb.HealthState_HEALTH_UNHEALTHY
)

// verdict is what the checks say about a running task.
type verdict struct {
	health shoalpb.HealthState
	ready  bool
}

// initialVerdict is a task's verdict when it starts running: STARTING if it
// has a liveness check, and ready at once only if it has no check at all.
func initialVerdict(live, ready *check) verdict {
	v := verdict{health: healthNone, ready: live == nil && ready == nil}
	if live != nil {
		v.health = healthStarting
	}
	return v
}

// prober runs a task's liveness and readiness checks every interval while
// the task runs and reports each change of the verdict. A check's first
// probe runs one interval after the start, as Docker's does; failures within
// its start period do not count until a probe has passed.
type prober struct {
	live, ready *check // nil: none
	handle      runtime.Handle
	clock       clock
	// changed receives every new verdict, in order; failure is set once,
	// when the liveness check has failed retries times in a row.
	changed func(v verdict, failure string)

	mu        sync.Mutex
	v         verdict
	readyPass bool
}

func newProber(live, ready *check, h runtime.Handle, clk clock, initial verdict, changed func(verdict, string)) *prober {
	return &prober{live: live, ready: ready, handle: h, clock: clk, changed: changed, v: initial, readyPass: initial.ready}
}

// run probes until ctx ends or the liveness check has failed for good.
func (p *prober) run(ctx context.Context) {
	started := p.clock.Now()
	var wg sync.WaitGroup
	if p.live != nil {
		wg.Go(func() { p.loop(ctx, p.live, started, p.liveResult) })
	}
	if p.ready != nil {
		wg.Go(func() { p.loop(ctx, p.ready, started, p.readyResult) })
	}
	wg.Wait()
}

// loop runs one check. result gets each counted outcome: passed, or the
// number of failures in a row with the last one's detail; it returns false
// to end the loop.
func (p *prober) loop(ctx context.Context, ck *check, started time.Time, result func(pass bool, failures int, detail string) bool) {
	failures, passedOnce := 0, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.clock.After(ck.interval):
		}
		pass, detail := probe(ctx, ck, p.handle)
		if ctx.Err() != nil {
			return
		}
		switch {
		case pass:
			failures, passedOnce = 0, true
		case !passedOnce && p.clock.Now().Sub(started) < ck.startPeriod:
			continue // still starting: the failure does not count
		default:
			failures++
		}
		if !result(pass, failures, detail) {
			return
		}
	}
}

func (p *prober) liveResult(pass bool, failures int, detail string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.v
	switch {
	case pass:
		v.health = healthHealthy
	case failures >= p.live.retries:
		v.health = healthUnhealthy
	default:
		return true // not enough failures yet to change the verdict
	}
	v.ready = p.readyLocked(v.health)
	if v.health == healthUnhealthy {
		msg := fmt.Sprintf("health check failed %d times", failures)
		if detail != "" {
			msg += ": " + detail
		}
		p.setLocked(v, msg)
		return false // the task is stopped; nothing more to probe
	}
	p.setLocked(v, "")
	return true
}

func (p *prober) readyResult(pass bool, failures int, _ string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case pass:
		p.readyPass = true
	case failures >= p.ready.retries:
		p.readyPass = false
	default:
		return true
	}
	v := p.v
	v.ready = p.readyLocked(v.health)
	p.setLocked(v, "")
	return true
}

// readyLocked applies the readiness rules: the readiness check's verdict
// when there is one, else healthy when there is a liveness check.
func (p *prober) readyLocked(health shoalpb.HealthState) bool {
	switch {
	case p.ready != nil:
		return p.readyPass
	case p.live != nil:
		return health == healthHealthy
	}
	return true
}

// setLocked reports v if it differs from the last verdict (or fails the
// task). Reporting under p.mu keeps the reports of both loops in order.
func (p *prober) setLocked(v verdict, failure string) {
	if v == p.v && failure == "" {
		return
	}
	p.v = v
	p.changed(v, failure)
}
