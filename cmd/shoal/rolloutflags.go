package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// rolloutFlags are the --update-* or --rollback-* flags: how tasks roll to
// a new spec or back to an earlier one. Create and update share them; only
// the flags given change the config.
type rolloutFlags struct {
	prefix        string // "update" or "rollback"
	parallelism   uint64
	delay         time.Duration
	order         string
	failureAction string
	monitor       time.Duration
	maxFailures   float32
	canary        uint64
	autoPromote   time.Duration
}

func (f *rolloutFlags) register(fs *pflag.FlagSet, prefix string) {
	f.prefix = prefix
	d := servicespec.DefaultUpdateConfig()
	fs.Uint64Var(&f.parallelism, prefix+"-parallelism", d.Parallelism, prefix+": tasks replaced at once (0: all)")
	fs.DurationVar(&f.delay, prefix+"-delay", time.Duration(d.DelayMs)*time.Millisecond, prefix+": wait between one batch being ready and the next starting")
	fs.StringVar(&f.order, prefix+"-order", orderName(d.Order), prefix+": stop-first (stop the old task, then start its replacement) or start-first (start the replacement beside it, stop the old one once the replacement is ready)")
	actions := "pause, continue or rollback"
	if prefix == "rollback" {
		actions = "pause or continue"
	}
	fs.StringVar(&f.failureAction, prefix+"-failure-action", failureActionName(d.FailureAction), prefix+": what to do when too many replacements fail: "+actions)
	fs.DurationVar(&f.monitor, prefix+"-monitor", time.Duration(d.MonitorMs)*time.Millisecond, prefix+": a replacement that fails this long after it became ready counts as a failure")
	fs.Float32Var(&f.maxFailures, prefix+"-max-failure-ratio", d.MaxFailureRatio, prefix+": fraction of the replacements (0 to 1) that may fail before the failure action is taken")
	if prefix == "update" {
		fs.Uint64Var(&f.canary, "update-canary", 0, "update: start this many replacements beside the old tasks first and wait for 'shoal service promote' (0: no canaries)")
		fs.DurationVar(&f.autoPromote, "update-auto-promote", 0, "update: promote the canaries once they have been ready this long (0: wait for 'shoal service promote')")
	}
}

// apply returns cur with the flags given on the command line applied (a
// missing cur is the defaults); cur itself is not modified. When no flag of
// the set is given, cur comes back as it is, nil on create: the control API
// stores the defaults.
func (f *rolloutFlags) apply(fs *pflag.FlagSet, cur *shoalpb.UpdateConfig) (*shoalpb.UpdateConfig, error) {
	given := func(name string) bool { return fs.Changed(f.prefix + "-" + name) }
	if !slices.ContainsFunc([]string{"parallelism", "delay", "order", "failure-action", "monitor", "max-failure-ratio", "canary", "auto-promote"}, given) {
		return cur, nil
	}
	c := servicespec.DefaultUpdateConfig()
	if cur != nil {
		c = proto.Clone(cur).(*shoalpb.UpdateConfig)
	}
	if given("parallelism") {
		c.Parallelism = f.parallelism
	}
	if given("delay") {
		c.DelayMs = f.delay.Milliseconds()
	}
	if given("order") {
		switch f.order {
		case "stop-first":
			c.Order = shoalpb.UpdateOrder_UPDATE_ORDER_STOP_FIRST
		case "start-first":
			c.Order = shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST
		default:
			return nil, fmt.Errorf("--%s-order %q: use start-first or stop-first", f.prefix, f.order)
		}
	}
	if given("failure-action") {
		switch f.failureAction {
		case "pause":
			c.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_PAUSE
		case "continue":
			c.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_CONTINUE
		case "rollback":
			if f.prefix == "rollback" {
				return nil, fmt.Errorf("--rollback-failure-action %q: a rollback cannot roll back; use pause or continue", f.failureAction)
			}
			c.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK
		default:
			if f.prefix == "rollback" {
				return nil, fmt.Errorf("--rollback-failure-action %q: use pause or continue", f.failureAction)
			}
			return nil, fmt.Errorf("--update-failure-action %q: use pause, continue or rollback", f.failureAction)
		}
	}
	if given("monitor") {
		c.MonitorMs = f.monitor.Milliseconds()
	}
	if given("max-failure-ratio") {
		c.MaxFailureRatio = f.maxFailures
	}
	if given("canary") {
		c.Canary = f.canary
	}
	if given("auto-promote") {
		c.AutoPromoteMs = f.autoPromote.Milliseconds()
	}
	return c, nil
}

// orderName is the flag value of an update order.
func orderName(o shoalpb.UpdateOrder) string {
	if o == shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST {
		return "start-first"
	}
	return "stop-first"
}

// failureActionName is the flag value of a failure action.
func failureActionName(a shoalpb.FailureAction) string {
	switch a {
	case shoalpb.FailureAction_FAILURE_ACTION_CONTINUE:
		return "continue"
	case shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK:
		return "rollback"
	}
	return "pause"
}
