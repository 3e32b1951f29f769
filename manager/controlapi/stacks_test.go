package controlapi

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// wordsRequest is a three-service stack on two networks, web depending on
// app being healthy and app on db having started.
func wordsRequest() *shoalpb.DeployStackRequest {
	svc := func(name, image string, replicas uint64, nets ...string) *shoalpb.ServiceSpec {
		spec := &shoalpb.ServiceSpec{Name: "words_" + name, Replicas: replicas,
			Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: image}}}
		for _, n := range nets {
			spec.Task.Networks = append(spec.Task.Networks, &shoalpb.NetworkAttachmentConfig{Target: "words_" + n, Aliases: []string{name}})
		}
		return spec
	}
	web := svc("web", "words-web:v1", 3, "front")
	web.Task.Ports = []*shoalpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS}}
	web.DependsOn = []*shoalpb.ServiceDependency{{Service: "words_app", Condition: shoalpb.DependencyCondition_DEPENDENCY_CONDITION_HEALTHY}}
	app := svc("app", "words-app:v1", 3, "front", "back")
	app.DependsOn = []*shoalpb.ServiceDependency{{Service: "words_db"}}
	return &shoalpb.DeployStackRequest{
		Stack:    "words",
		Networks: []*shoalpb.NetworkSpec{{Name: "words_back"}, {Name: "words_front"}},
		Services: []*shoalpb.ServiceSpec{svc("db", "words-db:v1", 1, "back"), app, web},
	}
}

// proposalCounter is a real store that counts proposals.
type proposalCounter struct {
	*state.Store
	n atomic.Int64
}

func (p *proposalCounter) Propose(ctx context.Context, actions ...*shoalpb.StoreAction) (uint64, error) {
	p.n.Add(1)
	return p.Store.Propose(ctx, actions...)
}

// actions renders a deploy's changes as "kind name action" lines.
func actions(changes []*shoalpb.StackChange) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "%s %s %s\n", c.GetKind(), c.GetName(), strings.ToLower(strings.TrimPrefix(c.GetAction().String(), "STACK_ACTION_")))
	}
	return b.String()
}

// A stack is created in one write, redeployed with one change (only that
// service is updated, and a rollout starts), pruned, and removed.
func TestDeployStackLifecycle(t *testing.T) {
	_, store := oneServer(t, nil)
	proposals := &proposalCounter{Store: store}
	s := New(Config{Store: proposals, Liveness: alive{}, NodeID: "m1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resp, err := s.DeployStack(ctx, wordsRequest())
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if got, want := actions(resp.Changes), "network words_back created\nnetwork words_front created\nservice words_db created\nservice words_app created\nservice words_web created\n"; got != want {
		t.Fatalf("first deploy changes:\n%swant:\n%s", got, want)
	}
	if n := proposals.n.Load(); n != 1 {
		t.Fatalf("the deploy took %d store commands, want 1", n)
	}
	var vips []string
	store.View(func(tx state.ReadTx) {
		for _, name := range []string{"words_db", "words_app", "words_web"} {
			svc := tx.ServiceByName(name)
			if svc.GetSpec().GetLabels()[servicespec.StackLabel] != "words" {
				t.Errorf("%s labels = %v, want the stack label", name, svc.GetSpec().GetLabels())
			}
			vips = append(vips, svc.GetEndpoint().GetVip())
			for _, att := range svc.GetSpec().GetTask().GetNetworks() {
				if tx.Network(att.GetTarget()) == nil {
					t.Errorf("%s is on %q, which is not a stored network ID", name, att.GetTarget())
				}
			}
		}
		if front, back := tx.NetworkByName("words_front"), tx.NetworkByName("words_back"); front.GetSubnet() == back.GetSubnet() || front.GetSubnet() == "" {
			t.Errorf("subnets %q and %q: want two different ones", front.GetSubnet(), back.GetSubnet())
		}
	})
	if vips[0] == vips[1] || vips[1] == vips[2] || vips[0] == vips[2] || vips[0] == "" {
		t.Fatalf("VIPs %v: want three different ones", vips)
	}

	list, err := s.ListServices(ctx, &shoalpb.ListServicesRequest{Filters: map[string]string{"label": servicespec.StackLabel + "=words"}})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	waiting := map[string]string{}
	for _, v := range list.GetServices() {
		waiting[v.GetService().GetSpec().GetName()] = v.GetWaiting()
	}
	if len(waiting) != 3 || waiting["words_db"] != "" || waiting["words_app"] != "waiting for words_db to start (0 of 1 running)" ||
		!strings.HasPrefix(waiting["words_web"], "waiting for words_app to be healthy") {
		t.Fatalf("waiting per service = %q", waiting)
	}

	resp, err = s.DeployStack(ctx, wordsRequest())
	if err != nil {
		t.Fatalf("redeploy unchanged: %v", err)
	}
	if strings.Contains(actions(resp.Changes), "created") || strings.Contains(actions(resp.Changes), "updated") {
		t.Fatalf("redeploying the same stack changed:\n%s", actions(resp.Changes))
	}

	changed := wordsRequest()
	changed.Services[1].Task.Container.Image = "words-app:v2"
	resp, err = s.DeployStack(ctx, changed)
	if err != nil {
		t.Fatalf("redeploy with a new app image: %v", err)
	}
	if got := actions(resp.Changes); !strings.Contains(got, "service words_app updated\n") || strings.Count(got, "unchanged") != 4 {
		t.Fatalf("redeploy with one change:\n%swant words_app updated, the rest unchanged", got)
	}
	store.View(func(tx state.ReadTx) {
		app := tx.ServiceByName("words_app")
		if app.GetSpecVersion() != 2 || app.GetUpdateStatus().GetState() != shoalpb.UpdateState_UPDATE_STATE_UPDATING {
			t.Errorf("words_app: version %d, update %v; want 2 and UPDATING", app.GetSpecVersion(), app.GetUpdateStatus().GetState())
		}
		if v := tx.ServiceByName("words_db").GetSpecVersion(); v != 1 {
			t.Errorf("words_db is at version %d; an unchanged service must be left alone", v)
		}
	})

	pruned := wordsRequest()
	pruned.Networks = pruned.Networks[:1]
	pruned.Services = pruned.Services[:1]
	pruned.Prune = true
	resp, err = s.DeployStack(ctx, pruned)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if got := actions(resp.Changes); !strings.Contains(got, "service words_app removed\nservice words_web removed\nnetwork words_front removed\n") {
		t.Fatalf("prune changes:\n%s", got)
	}

	resp2, err := s.RemoveStack(ctx, &shoalpb.RemoveStackRequest{Stack: "words"})
	if err != nil {
		t.Fatalf("stack rm: %v", err)
	}
	if got, want := actions(resp2.Changes), "service words_db removed\nnetwork words_back removed\n"; got != want {
		t.Fatalf("stack rm changes:\n%swant:\n%s", got, want)
	}
	store.View(func(tx state.ReadTx) {
		if n, m := len(tx.Services()), len(tx.Networks()); n != 0 || m != 0 {
			t.Fatalf("after stack rm: %d services and %d networks are left", n, m)
		}
	})
	_, err = s.RemoveStack(ctx, &shoalpb.RemoveStackRequest{Stack: "words"})
	wantStatus(t, "stack rm of a removed stack", err, codes.NotFound, `no stack named "words"`)
}

// A deploy refused for any reason changes nothing: the first stack stays
// exactly as it was, and no network of the refused one is created.
func TestDeployStackRefusedChangesNothing(t *testing.T) {
	s, store := oneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.DeployStack(ctx, wordsRequest()); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	storeService(t, store, "words_mine")
	var before []byte
	snapshot := func() []byte {
		var b []byte
		store.View(func(tx state.ReadTx) {
			for _, svc := range tx.Services() {
				m, _ := proto.Marshal(svc)
				b = append(b, m...)
			}
			for _, nw := range tx.Networks() {
				m, _ := proto.Marshal(nw)
				b = append(b, m...)
			}
		})
		return b
	}
	before = snapshot()

	cases := []struct {
		name  string
		edit  func(r *shoalpb.DeployStackRequest)
		code  codes.Code
		parts []string
	}{
		{"bad stack name", func(r *shoalpb.DeployStackRequest) { r.Stack = "Words!" }, codes.InvalidArgument, []string{"stack", `"Words!"`}},
		{"service outside the stack's names", func(r *shoalpb.DeployStackRequest) { r.Services[0].Name = "db" }, codes.InvalidArgument, []string{`"db"`, "words_<name>"}},
		{"invalid spec names the service", func(r *shoalpb.DeployStackRequest) { r.Services[2].Task.Container.Image = "" }, codes.InvalidArgument, []string{"service words_web", "image"}},
		{"a refusal names the compose key", func(r *shoalpb.DeployStackRequest) { r.Services[2].Task.Container.Workdir = "relative" }, codes.InvalidArgument, []string{"service words_web: working_dir: \"relative\" must be an absolute path"}},
		{"a service that is not the stack's", func(r *shoalpb.DeployStackRequest) {
			r.Services = append(r.Services, &shoalpb.ServiceSpec{Name: "words_mine", Replicas: 1, Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: "x"}}})
		}, codes.FailedPrecondition, []string{"words_mine", "not part of stack words"}},
		{"an undefined network", func(r *shoalpb.DeployStackRequest) { r.Services[0].Task.Networks[0].Target = "words_nowhere" }, codes.InvalidArgument, []string{"service words_db", "words_nowhere"}},
		{"a dependency that does not exist", func(r *shoalpb.DeployStackRequest) {
			r.Services[0].DependsOn = []*shoalpb.ServiceDependency{{Service: "words_cache"}}
		}, codes.InvalidArgument, []string{"service words_db", "words_cache does not exist"}},
		{"a dependency cycle", func(r *shoalpb.DeployStackRequest) {
			r.Services[0].DependsOn = []*shoalpb.ServiceDependency{{Service: "words_web"}}
		}, codes.InvalidArgument, []string{"cycle", "words_db → words_web → words_app → words_db"}},
		{"awaiting completion of a service that never completes", func(r *shoalpb.DeployStackRequest) {
			r.Services[1].DependsOn[0].Condition = shoalpb.DependencyCondition_DEPENDENCY_CONDITION_COMPLETED
		}, codes.InvalidArgument, []string{"words_db", "never completes"}},
		{"a changed subnet", func(r *shoalpb.DeployStackRequest) { r.Networks[0].Subnet = "10.99.0.0/24" }, codes.InvalidArgument, []string{"words_back", "not changed in place"}},
		{"a mode change", func(r *shoalpb.DeployStackRequest) {
			r.Services[0].Mode, r.Services[0].Replicas = shoalpb.ServiceMode_SERVICE_MODE_GLOBAL, 0
		}, codes.InvalidArgument, []string{"words_db", "mode cannot change"}},
		{"a published port another service holds", func(r *shoalpb.DeployStackRequest) {
			r.Services[0].Task.Ports = []*shoalpb.PortConfig{{Protocol: "tcp", TargetPort: 5432, PublishedPort: 8080, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS}}
		}, codes.InvalidArgument, []string{"words_db", "8080"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := wordsRequest()
			req.Networks = append(req.Networks, &shoalpb.NetworkSpec{Name: "words_extra"})
			req.Services[2].Task.Container.Image = "words-web:v2"
			req.Prune = true
			c.edit(req)
			_, err := s.DeployStack(ctx, req)
			wantStatus(t, c.name, err, c.code, c.parts...)
			if string(snapshot()) != string(before) {
				t.Fatalf("a refused deploy changed the store")
			}
		})
	}
}

// Stacks deployed at once through three managers each get their own
// networks, subnets and VIPs: a draft that meets a write made meanwhile is
// built again, not refused.
func TestConcurrentStackDeploys(t *testing.T) {
	servers, stores, _ := realServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const stacks = 9
	var wg sync.WaitGroup
	errs := make(chan error, stacks)
	for i := range stacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := wordsRequest()
			name := fmt.Sprintf("s%d", i)
			req.Stack = name
			for _, n := range req.Networks {
				n.Name = strings.Replace(n.Name, "words_", name+"_", 1)
			}
			for _, svc := range req.Services {
				svc.Name = strings.Replace(svc.Name, "words_", name+"_", 1)
				svc.Task.Ports = nil
				for _, att := range svc.Task.Networks {
					att.Target = strings.Replace(att.Target, "words_", name+"_", 1)
				}
				for _, dep := range svc.DependsOn {
					dep.Service = strings.Replace(dep.Service, "words_", name+"_", 1)
				}
			}
			_, err := servers[i%len(servers)].DeployStack(ctx, req)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("deploy: %v", err)
		}
	}
	if err := stores[0].CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	stores[0].View(func(tx state.ReadTx) {
		if n, m := len(tx.Services()), len(tx.Networks()); n != 3*stacks || m != 2*stacks {
			t.Fatalf("%d services and %d networks, want %d and %d", n, m, 3*stacks, 2*stacks)
		}
	})
}

// A stack's service scaled through UpdateService (as the CLI sends it, every
// nested message present) starts no rollout, and deploying the same file
// again afterwards rolls nothing either: an absent message and an empty
// one are the same spec.
func TestStackServiceScaledByHandDoesNotRoll(t *testing.T) {
	s, store := oneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.DeployStack(ctx, wordsRequest()); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	svc, err := s.GetService(ctx, &shoalpb.GetServiceRequest{Service: "words_app"})
	if err != nil {
		t.Fatal(err)
	}
	spec := proto.Clone(svc.Spec).(*shoalpb.ServiceSpec)
	servicespec.Fill(spec)
	spec.Replicas = 5
	if svc, err = s.UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: svc.Id, Spec: spec}); err != nil {
		t.Fatalf("scale: %v", err)
	}
	if st := svc.GetUpdateStatus(); st != nil {
		t.Fatalf("scaling started a rollout: %v", st)
	}
	resp, err := s.DeployStack(ctx, wordsRequest())
	if err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	if got := actions(resp.Changes); !strings.Contains(got, "service words_app updated") {
		t.Fatalf("the redeploy should set replicas back to 3:\n%s", got)
	}
	store.View(func(tx state.ReadTx) {
		app := tx.ServiceByName("words_app")
		if app.GetSpec().GetReplicas() != 3 || app.GetUpdateStatus() != nil {
			t.Fatalf("after the redeploy: replicas %d, update %v; want 3 and no rollout", app.GetSpec().GetReplicas(), app.GetUpdateStatus())
		}
	})
}
