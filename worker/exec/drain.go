package exec

import (
	"context"
	"time"

	"shoal/worker/runtime"
)

// drainPoll is how often a stopping task's open connections are counted.
const drainPoll = 100 * time.Millisecond

// drained is how a stopping task's connections ended.
type drained struct {
	open int           // open when the drain began
	left int           // still open when it ended (grace passed)
	took time.Duration // from the first count to the end
	err  error         // why counting stopped early
}

// drainConns waits until counter reports no open inbound connection, or
// grace has passed, or ctx ends, counting every drainPoll on clk. A count
// that fails ends the wait: the stop signal goes out as it would without
// a drain.
func drainConns(ctx context.Context, clk clock, counter runtime.ConnCounter, grace time.Duration) (d drained) {
	start := clk.Now()
	defer func() { d.took = clk.Now().Sub(start) }()
	var deadline <-chan time.Time // armed once a connection is open
	for {
		n, err := counter.InboundConns(ctx)
		if err != nil {
			d.err = err
			return d
		}
		d.left = n
		if n == 0 {
			return d
		}
		if deadline == nil {
			d.open = n
			deadline = clk.After(grace)
		}
		select {
		case <-ctx.Done():
			d.err = ctx.Err()
			return d
		case <-deadline:
			return d
		case <-clk.After(drainPoll):
		}
	}
}

// drain holds the stop signal of a task whose runtime counts connections
// until its open inbound connections have ended, or its stop grace period
// has passed, and logs what it waited for.
func (c *controller) drain(ctx context.Context, h runtime.Handle, grace time.Duration) {
	counter, ok := h.(runtime.ConnCounter)
	if !ok {
		return
	}
	d := drainConns(ctx, c.e.clock, counter, grace)
	switch {
	case ctx.Err() != nil:
		// The agent is stopping; the task is left as it is.
	case d.err != nil:
		c.e.log.Info("cannot count the task's connections; stopping it", "task", c.id, "after", d.took.Round(time.Millisecond), "err", d.err)
	case d.left > 0:
		c.e.log.Info("connections still open after the stop grace period", "task", c.id, "open", d.left, "grace", grace)
	case d.open > 0:
		c.e.log.Info("drained connections", "task", c.id, "connections", d.open, "took", d.took.Round(time.Millisecond))
	}
}
