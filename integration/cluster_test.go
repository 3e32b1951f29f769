package integration

import (
	"fmt"
	"reflect"
	"strconv"
	"testing"

	"shoal/internal/testutil"
)

// A write on any manager is applied on every manager, and the manager that
// took it shows it at once (read-your-writes, even when forwarded).
func TestWritesOnAnyManagerReachAllManagers(t *testing.T) {
	t.Parallel()
	for _, managers := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d managers", managers), func(t *testing.T) {
			t.Parallel()
			c := testutil.NewCluster(t, managers, 0)
			target := c.Managers[0].ID(t)
			want := map[string]string{}
			for i, writer := range c.Managers {
				key, value := "from-"+writer.Name, strconv.Itoa(i)
				mustShoal(t, writer, "node", "update", "--label-add", key+"="+value, target)
				want[key] = value
				got, err := labels(t, writer, target)
				if err != nil {
					t.Fatalf("%s: %v", writer.Name, err)
				}
				if got != mapString(want) {
					t.Fatalf("right after its own write, %s shows labels %s, want %s", writer.Name, got, mapString(want))
				}
			}
			for _, reader := range c.Managers {
				waitLabels(t, reader, target, want)
			}
		})
	}
}

// Stopping every daemon and starting them again from their data dirs keeps
// the cluster: same nodes, same labels, a leader, everyone ready.
func TestWholeClusterRestartKeepsState(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 3, 1)
	m := c.Managers[1]
	w := c.Workers[0]
	mustShoal(t, m, "node", "update", "--label-add", "zone=a", "--label-add", "tier=db", w.ID(t))
	mustShoal(t, m, "node", "update", "--availability", "drain", c.Managers[2].ID(t))
	ids := nodeIDs(t, m)

	for _, n := range c.Nodes() {
		n.Stop(t)
	}
	for _, n := range c.Nodes() {
		if n.Running() {
			t.Fatalf("%s still running after Stop", n.Name)
		}
		n.Start(t, "daemon", "--data-dir", n.DataDir)
	}
	c.WaitHealthy(t)

	for _, viewer := range c.Managers {
		if got := nodeIDs(t, viewer); !reflect.DeepEqual(got, ids) {
			t.Fatalf("after the restart %s lists nodes %v, want %v", viewer.Name, got, ids)
		}
		waitLabels(t, viewer, w.ID(t), map[string]string{"zone": "a", "tier": "db"})
		r, err := row(t, viewer, c.Managers[2].ID(t))
		if err != nil {
			t.Fatal(err)
		}
		if r.Availability != "drain" {
			t.Fatalf("after the restart %s shows %s as %s, want drain", viewer.Name, c.Managers[2].Name, r.Availability)
		}
	}
	// The restarted cluster takes writes.
	mustShoal(t, c.Managers[0], "node", "update", "--label-add", "after=restart", w.ID(t))
	waitLabels(t, c.Managers[2], w.ID(t), map[string]string{"zone": "a", "tier": "db", "after": "restart"})
}
