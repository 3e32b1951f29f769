package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"shoal/manager/controlapi"
	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// printServicePretty prints what `service inspect --pretty` shows of one
// service: what it runs, how it is reached, and how it rolls out.
func printServicePretty(out io.Writer, s serviceInspect, now time.Time) {
	spec := s.GetSpec()
	fmt.Fprintf(out, "ID:              %s\n", s.GetId())
	fmt.Fprintf(out, "Name:            %s\n", spec.GetName())
	mode := controlapi.ModeName(spec.GetMode())
	if spec.GetMode() == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED || spec.GetMode() == shoalpb.ServiceMode_SERVICE_MODE_REPLICATED_JOB {
		mode += fmt.Sprintf(", %d replicas", spec.GetReplicas())
	}
	fmt.Fprintf(out, "Mode:            %s\n", mode)
	fmt.Fprintf(out, "Image:           %s\n", spec.GetTask().GetContainer().GetImage())
	versions := make([]string, 0, len(s.GetPreviousSpecs()))
	for _, v := range s.GetPreviousSpecs() {
		versions = append(versions, fmt.Sprint(v.GetVersion()))
	}
	kept := "none kept"
	if len(versions) > 0 {
		kept = "kept for rollback: " + strings.Join(versions, ", ")
	}
	fmt.Fprintf(out, "Spec version:    %d (%s)\n", s.GetSpecVersion(), kept)
	endpoint := s.EndpointMode
	if vip := s.GetEndpoint().GetVip(); vip != "" {
		endpoint += " " + vip
	}
	fmt.Fprintf(out, "Endpoint:        %s\n", endpoint)
	if s.Ports != "" {
		fmt.Fprintf(out, "Ports:           %s\n", s.Ports)
	}
	if st := s.GetUpdateStatus(); st != nil {
		fmt.Fprintln(out, "Update status:")
		fmt.Fprintf(out, "  State:         %s (version %d → %d)\n", controlapi.UpdateStateName(st.GetState()), st.GetFromVersion(), st.GetToVersion())
		fmt.Fprintf(out, "  Started:       %s\n", ago(now.Sub(st.GetStartedAt().AsTime())))
		if st.GetCompletedAt() != nil {
			fmt.Fprintf(out, "  Completed:     %s\n", ago(now.Sub(st.GetCompletedAt().AsTime())))
		}
		if st.GetPromoted() {
			fmt.Fprintln(out, "  Promoted:      yes")
		}
		if st.GetMessage() != "" {
			fmt.Fprintf(out, "  Message:       %s\n", st.GetMessage())
		}
		if len(st.GetFailedTasks()) > 0 {
			fmt.Fprintf(out, "  Failed tasks:  %s\n", strings.Join(st.GetFailedTasks(), ", "))
		}
	}
	update, rollback := spec.GetUpdateConfig(), spec.GetRollbackConfig()
	if update == nil {
		update = servicespec.DefaultUpdateConfig()
	}
	if rollback == nil {
		rollback = servicespec.DefaultUpdateConfig()
	}
	printUpdateConfig(out, "Update config:", update)
	printUpdateConfig(out, "Rollback config:", rollback)
	if len(s.Endpoints) > 0 {
		fmt.Fprintln(out, "Endpoints:")
		for _, ep := range s.Endpoints {
			addrs := make([]string, len(ep.Addresses))
			for i, a := range ep.Addresses {
				addrs[i] = a.Address + " on " + a.Network
			}
			fmt.Fprintf(out, "  - %s (node %s): %s\n", ep.Task, ep.Node, strings.Join(addrs, ", "))
		}
	}
}

func printUpdateConfig(out io.Writer, title string, c *shoalpb.UpdateConfig) {
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	parallelism := fmt.Sprint(c.GetParallelism())
	if c.GetParallelism() == 0 {
		parallelism = "all at once"
	}
	fmt.Fprintln(out, title)
	fmt.Fprintf(out, "  Parallelism:   %s\n", parallelism)
	fmt.Fprintf(out, "  Delay:         %s\n", ms(c.GetDelayMs()))
	fmt.Fprintf(out, "  Order:         %s\n", orderName(c.GetOrder()))
	fmt.Fprintf(out, "  On failure:    %s\n", failureActionName(c.GetFailureAction()))
	fmt.Fprintf(out, "  Monitor:       %s\n", ms(c.GetMonitorMs()))
	fmt.Fprintf(out, "  Max failures:  %g of the replacements\n", c.GetMaxFailureRatio())
	if c.GetCanary() > 0 {
		promote := "promote by hand"
		if c.GetAutoPromoteMs() > 0 {
			promote = fmt.Sprintf("promoted after %s ready", ms(c.GetAutoPromoteMs()))
		}
		fmt.Fprintf(out, "  Canaries:      %d (%s)\n", c.GetCanary(), promote)
	}
}
