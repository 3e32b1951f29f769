package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

// `node update` flags become the request; --drain-deadline goes with or
// without --availability, and 0 is a change too (no deadline).
func TestNodeUpdateFlags(t *testing.T) {
	drain := shoalpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
	cases := []struct {
		args    []string
		want    *shoalpb.UpdateNodeRequest
		errPart string
	}{
		{[]string{"--drain-deadline", "30s"}, &shoalpb.UpdateNodeRequest{Node: "n1", HasDrainDeadline: true, DrainDeadlineMs: 30_000}, ""},
		{[]string{"--availability", "drain", "--drain-deadline", "1m"},
			&shoalpb.UpdateNodeRequest{Node: "n1", HasAvailability: true, Availability: drain, HasDrainDeadline: true, DrainDeadlineMs: 60_000}, ""},
		{[]string{"--drain-deadline", "0s"}, &shoalpb.UpdateNodeRequest{Node: "n1", HasDrainDeadline: true}, ""},
		{[]string{"--availability", "drain", "--label-add", "zone=eu"},
			&shoalpb.UpdateNodeRequest{Node: "n1", HasAvailability: true, Availability: drain, LabelAdd: map[string]string{"zone": "eu"}}, ""},
		{[]string{"--availability", "off"}, nil, `--availability: "off" is not one of active, pause, drain`},
		{[]string{"--label-add", "=x"}, nil, `--label-add "=x": use KEY=VALUE`},
		{nil, nil, "nothing to update: give --availability, --drain-deadline, --label-add or --label-rm"},
	}
	for _, c := range cases {
		var f nodeUpdateFlags
		fs := pflag.NewFlagSet("node update", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatalf("parse %q: %v", c.args, err)
		}
		req, err := f.request("n1", fs.Changed)
		if c.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), c.errPart) {
				t.Errorf("%q: got %v, want an error containing %q", c.args, err, c.errPart)
			}
			continue
		}
		if err != nil || !proto.Equal(req, c.want) {
			t.Errorf("%q: got %v (%v), want %v", c.args, req, err, c.want)
		}
	}
}
