package scheduler

import (
	"errors"
	"testing"

	shoalpb "shoal/proto"
)

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		in      string
		want    Constraint
		wantErr string
	}{
		{in: "node.labels.zone==eu", want: Constraint{Key: "node.labels.zone", Value: "eu", Equal: true}},
		{in: "  node.role != manager ", want: Constraint{Key: "node.role", Value: "manager"}},
		{in: "Node.Labels.Zone==eu", want: Constraint{Key: "node.labels.Zone", Value: "eu", Equal: true}},
		{in: "node.id==4f1c", want: Constraint{Key: "node.id", Value: "4f1c", Equal: true}},
		{in: "node.hostname!=web-1", want: Constraint{Key: "node.hostname", Value: "web-1"}},
		{in: "node.platform.os==linux", want: Constraint{Key: "node.platform.os", Value: "linux", Equal: true}},
		{in: "NODE.PLATFORM.ARCH==arm64", want: Constraint{Key: "node.platform.arch", Value: "arm64", Equal: true}},
		{in: "node.role==Worker", want: Constraint{Key: "node.role", Value: "Worker", Equal: true}},
		{in: "node.labels.a!=b=c", want: Constraint{Key: "node.labels.a", Value: "b=c"}},
		{
			in:      "",
			wantErr: `invalid constraint "": empty; write KEY==VALUE or KEY!=VALUE, e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node.role=manager",
			wantErr: `invalid constraint "node.role=manager": missing operator == or !=, e.g. "node.role==worker" or "node.role!=manager"`,
		},
		{
			in:      "==eu",
			wantErr: `invalid constraint "==eu": missing key before "==", e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node.zone==eu",
			wantErr: `invalid constraint "node.zone==eu": unknown key "node.zone"; use node.id, node.hostname, node.role, node.labels.<name>, node.platform.os or node.platform.arch, e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node.labels.==eu",
			wantErr: `invalid constraint "node.labels.==eu": missing label name after "node.labels.", e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node labels.zone==eu",
			wantErr: `invalid constraint "node labels.zone==eu": key "node labels.zone" contains a space, e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node.hostname!=",
			wantErr: `invalid constraint "node.hostname!=": missing value after "!=", e.g. "node.hostname!=web-1"`,
		},
		{
			in:      "node.labels.zone==eu==us",
			wantErr: `invalid constraint "node.labels.zone==eu==us": more than one operator; write one comparison per constraint, e.g. "node.labels.zone==eu"`,
		},
		{
			in:      "node.role==boss",
			wantErr: `invalid constraint "node.role==boss": node.role is manager or worker, not "boss", e.g. "node.role==worker"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseConstraint(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalidConstraint) {
					t.Fatalf("error %v\nwant %s (wrapping ErrInvalidConstraint)", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseConstraints(t *testing.T) {
	got, err := ParseConstraints([]string{"node.role==worker", "node.labels.zone!=eu"})
	if err != nil || len(got) != 2 || got[1].String() != "node.labels.zone!=eu" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParseConstraints([]string{"node.role==worker", "bad"}); !errors.Is(err, ErrInvalidConstraint) {
		t.Fatalf("error %v, want ErrInvalidConstraint", err)
	}
}

func TestConstraintMatch(t *testing.T) {
	n := mkNode("abc", label("zone", "eu"), manager())
	n.Description.Hostname = "Web-1"
	pending := mkNode("def")
	pending.Role = shoalpb.NodeRole_NODE_ROLE_UNSPECIFIED
	pending.Spec.DesiredRole = shoalpb.NodeRole_NODE_ROLE_MANAGER
	tests := []struct {
		constraint string
		node       *shoalpb.Node
		want       bool
	}{
		{"node.id==abc", n, true},
		{"node.id!=abc", n, false},
		{"node.hostname==web-1", n, true},
		{"node.role==manager", n, true},
		{"node.role!=manager", n, false},
		{"node.role==manager", pending, true}, // no certificate yet: the desired role
		{"node.role==worker", mkNode("w"), true},
		{"node.platform.os==linux", n, true},
		{"node.platform.arch==arm64", n, false},
		{"node.labels.zone==eu", n, true},
		{"node.labels.zone==EU", n, true},
		{"node.labels.zone!=eu", n, false},
		{"node.labels.rack==1", n, false},
		{"node.labels.rack!=1", n, true}, // a missing label is not 1
		{"node.labels.Zone==eu", n, false},
		{"node.labels.zone==eu", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.constraint, func(t *testing.T) {
			c, err := ParseConstraint(tc.constraint)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(tc.node); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidateSpread(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: "node.labels.zone"},
		{in: "node.hostname"},
		{in: "", wantErr: `invalid placement preference: empty spread; name a node attribute, e.g. "node.labels.zone"`},
		{in: "zone", wantErr: `invalid placement preference: spread "zone": unknown key "zone"; use node.id, node.hostname, node.role, node.labels.<name>, node.platform.os or node.platform.arch, e.g. "node.labels.zone"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidateSpread(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalidPreference) {
				t.Fatalf("error %v\nwant %s", err, tc.wantErr)
			}
		})
	}
}
