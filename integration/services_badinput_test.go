package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// servicesState is what a refused service command must not change: every
// service with its version and its whole spec, and how many tasks the store
// holds.
func servicesState(t *testing.T, api shoalpb.ControlServiceClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svcs, err := api.ListServices(ctx, &shoalpb.ListServicesRequest{})
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	tasks, err := api.ListTasks(ctx, &shoalpb.ListTasksRequest{})
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	lines := []string{fmt.Sprintf("%d tasks", len(tasks.Tasks))}
	for _, v := range svcs.Services {
		spec, err := protojson.Marshal(v.Service.GetSpec())
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s v%d %s", v.Service.GetId(), v.Service.GetMeta().GetVersion(), spec))
	}
	sort.Strings(lines[1:])
	return strings.Join(lines, "\n")
}

// Service commands given bad input exit with an error that names the flag,
// value or service and the way out, and change nothing: no service, spec
// version or task is written.
func TestBadServiceInput(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m := c.Managers[0]
	api := controlAPI(t, m)
	mustShoal(t, m, append([]string{"service", "create", "--detach", "--name", "web", "--replicas", "1"}, sleeper...)...)
	mustShoal(t, m, append([]string{"service", "create", "--detach", "--name", "everywhere", "--mode", "global"}, sleeper...)...)
	// Two services whose IDs share a first character make an ambiguous
	// prefix; names are never ambiguous (they are unique).
	ids := map[byte]string{}
	var prefix string
	for i := 0; prefix == "" && i < 40; i++ {
		out := strings.TrimSpace(mustShoal(t, m, append([]string{"service", "create", "--detach", "--replicas", "0", "--name", fmt.Sprintf("idle%d", i)}, sleeper...)...))
		if _, dup := ids[out[0]]; dup {
			prefix = out[:1]
		}
		ids[out[0]] = out
	}
	envFile := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(envFile, []byte("A=1\n=nokey\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	create := func(flags ...string) []string {
		return append(append([]string{"service", "create", "--detach", "--name", "new"}, flags...), sleeper...)
	}
	cases := []cliCase{
		{"unknown restart condition", create("--restart-condition", "sometimes"), []string{"--restart-condition", "sometimes", "none, on-failure or any"}},
		{"unknown mode", create("--mode", "daemonset"), []string{"--mode", "daemonset"}},
		{"negative replicas", create("--replicas", "-1"), []string{"--replicas", "-1"}},
		{"replicas on a global service", create("--mode", "global", "--replicas", "2"), []string{"--replicas", "global"}},
		{"unparsable constraint", create("--constraint", "node.labels.zone=eu"), []string{"--constraint", "node.labels.zone=eu", "=="}},
		{"constraint on an unknown attribute", create("--constraint", "node.colour==red"), []string{"--constraint", "node.colour"}},
		{"unparsable memory size", create("--reserve-memory", "lots"), []string{"--reserve-memory", "lots"}},
		{"unparsable CPU count", create("--limit-cpu", "many"), []string{"--limit-cpu", "many"}},
		{"memory limit too small to start", create("--limit-memory", "3M"), []string{"--limit-memory", "at least 6M"}},
		{"unparsable publish", create("--publish", "published=80,target=http"), []string{"--publish", "target"}},
		{"unknown mount type", create("--mount", "type=nfs,source=a,target=/a"), []string{"--mount", "nfs"}},
		{"unparsable placement preference", create("--placement-pref", "pack=node.labels.zone"), []string{"--placement-pref", "spread="}},
		{"env file line without a key", create("--env-file", envFile), []string{envFile, "2"}},
		{"unknown flag", create("--replica", "3"), []string{"--replica"}},
		{"no image", []string{"service", "create", "--detach", "--name", "new"}, []string{"usage: shoal service create [flags] IMAGE"}},
		{"duplicate name", append([]string{"service", "create", "--detach", "--name", "web"}, sleeper...), []string{"web", "already"}},
		{"scale of an unknown service", []string{"service", "scale", "--detach", "nosuch=2"}, []string{"nosuch", "not found"}},
		{"scale of a global service", []string{"service", "scale", "--detach", "everywhere=2"}, []string{"everywhere", "global"}},
		{"negative scale", []string{"service", "scale", "--detach", "web=-1"}, []string{"web=-1"}},
		{"update of an unknown service", []string{"service", "update", "--detach", "--replicas", "2", "nosuch"}, []string{"nosuch", "not found"}},
		{"update with an unknown restart condition", []string{"service", "update", "--detach", "--restart-condition", "sometimes", "web"}, []string{"--restart-condition", "sometimes"}},
		{"rm of an unknown service", []string{"service", "rm", "nosuch"}, []string{"nosuch", "not found"}},
	}
	if prefix != "" {
		cases = append(cases, cliCase{"ambiguous ID prefix", []string{"service", "rm", prefix}, []string{"ambiguous", prefix}})
	}
	refused(t, m, cases, func(t *testing.T) string { return servicesState(t, api) })
}
