package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"shoal/manager/controlapi"
	"shoal/manager/state"
	"shoal/manager/state/statetest"
	shoalpb "shoal/proto"
)

type noLiveness struct{}

func (noLiveness) Alive(string) bool { return false }

// controlDaemon serves the real control API over a one-manager in-process
// store on a unix socket, as a manager's local socket does, and returns its
// -H and the store.
func controlDaemon(t *testing.T) (string, *state.Store) {
	t.Helper()
	store := statetest.Cluster(t, 1)[0]
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	shoalpb.RegisterControlServiceServer(srv, controlapi.New(controlapi.Config{Store: store, Liveness: noLiveness{}, NodeID: "m1"}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock, store
}

// lines are out's lines with their columns' padding squeezed to one space.
func lines(out string) []string {
	var l []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		l = append(l, strings.Join(strings.Fields(line), " "))
	}
	return l
}

func TestNetworkCommands(t *testing.T) {
	host, store := controlDaemon(t)

	out, err := runCLI(host, "network", "create", "--label", "team=web", "--attachable", "front")
	frontID := strings.TrimSpace(out)
	if err != nil || len(frontID) != 25 {
		t.Fatalf("network create front: %q %v, want the new ID", out, err)
	}
	if out, err := runCLI(host, "network", "create", "--subnet", "10.90.0.0/16", "back"); err != nil {
		t.Fatalf("network create --subnet: %q %v", out, err)
	}
	_, err = runCLI(host, "network", "create", "--subnet", "10.90.0.0/24", "small")
	if err == nil || !strings.Contains(err.Error(), "--subnet 10.90.0.0/24 is too small") {
		t.Fatalf("network create with a too-small subnet: %v", err)
	}
	if _, err := runCLI(host, "network", "create", "--label", "=x", "bad"); err == nil || !strings.Contains(err.Error(), "--label") {
		t.Fatalf("network create --label =x: %v", err)
	}
	if _, err := runCLI(host, "network", "create"); err == nil || !strings.Contains(err.Error(), "usage: shoal network create") {
		t.Fatalf("network create without a name: %v", err)
	}

	// A service on front, as the service API stores it (by network ID).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc := &shoalpb.Service{Id: "svcweb", Spec: &shoalpb.ServiceSpec{Name: "web", Replicas: 1, Task: &shoalpb.TaskSpec{
		Container: &shoalpb.ContainerSpec{Image: "nginx"}, Networks: []*shoalpb.NetworkAttachmentConfig{{Target: frontID}}}}}
	if _, err := store.Propose(ctx, &shoalpb.StoreAction{Kind: shoalpb.StoreActionKind_STORE_ACTION_CREATE, Target: &shoalpb.StoreAction_Service{Service: svc}}); err != nil {
		t.Fatal(err)
	}

	out, err = runCLI(host, "network", "ls")
	got := lines(out)
	want := []string{
		"ID NAME SUBNET SERVICES",
		"default default 10.200.0.0/16",
		"<back> back 10.90.0.0/16",
		frontID + " front 10.64.0.0/16 web",
	}
	if err != nil || len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || !strings.HasSuffix(got[2], " back 10.90.0.0/16") || got[3] != want[3] {
		t.Fatalf("network ls:\n%s%v\nwant rows like:\n%s", out, err, strings.Join(want, "\n"))
	}
	out, err = runCLI(host, "network", "ls", "-q")
	if ids := lines(out); err != nil || len(ids) != 3 || ids[0] != "default" || ids[2] != frontID {
		t.Fatalf("network ls -q: %q %v", out, err)
	}

	out, err = runCLI(host, "network", "inspect", "front", "default")
	var views []struct {
		Network struct {
			ID     string
			Subnet string
			Spec   struct {
				Name       string
				Attachable bool
				Labels     map[string]string
			}
		}
		Services []string
		Default  bool
	}
	if err != nil || json.Unmarshal([]byte(out), &views) != nil || len(views) != 2 ||
		views[0].Network.ID != frontID || views[0].Network.Subnet != "10.64.0.0/16" || !views[0].Network.Spec.Attachable ||
		views[0].Network.Spec.Labels["team"] != "web" || strings.Join(views[0].Services, ",") != "web" || views[0].Default ||
		views[1].Network.Spec.Name != "default" || !views[1].Default {
		t.Fatalf("network inspect front default:\n%s%v", out, err)
	}
	if out, err := runCLI(host, "network", "inspect", "-f", "{{.Network.Subnet}}", "back"); err != nil || out != "10.90.0.0/16\n" {
		t.Fatalf("network inspect -f: %q %v", out, err)
	}
	if _, err := runCLI(host, "network", "inspect", "nosuch"); err == nil || !strings.Contains(err.Error(), "'shoal network ls'") {
		t.Fatalf("network inspect nosuch: %v", err)
	}

	// rm tries each network and reports every failure.
	out, err = runCLI(host, "network", "rm", "front", "default", "back", "nosuch")
	for _, part := range []string{"network front is in use by service(s) web", "the default network cannot be removed", `network "nosuch" not found`} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Fatalf("network rm: %v, want it to mention %q", err, part)
		}
	}
	if out != "back\n" {
		t.Fatalf("network rm printed %q, want only the removed back", out)
	}
	if out, _ := runCLI(host, "network", "ls", "-q"); len(lines(out)) != 2 {
		t.Fatalf("after rm, network ls -q: %q, want default and front", out)
	}
}

// `shoal init` refuses a --network-pool it could never take a network from,
// before it writes anything but the empty data dir.
func TestInitRefusesBadNetworkPool(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--network-pool", "10.200.0.0/12"}, "overlaps task_pool 10.200.0.0/16"},
		{[]string{"--network-pool", "10.70.0.0/16", "--task-pool", "10.70.0.0/16"}, "overlaps task_pool 10.70.0.0/16"},
		{[]string{"--network-pool", "10.201.0.0/20"}, "overlaps vip_pool"},
		{[]string{"--network-pool", "fd00::/48"}, "not an IPv4 CIDR"},
	} {
		args := append([]string{"init", "--data-dir", t.TempDir(), "--advertise-addr", "127.0.0.1:42377", "--log-level", "error"}, c.args...)
		_, err := runCLI("unix:///nonexistent.sock", args...)
		if err == nil || !strings.HasPrefix(err.Error(), "--network-pool: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("shoal %s: %v, want an error naming --network-pool and saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
