package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// Every --update-* and --rollback-* flag lands in its field; without any,
// the spec carries no config and the control API stores the defaults.
func TestRolloutFlagsFillTheSpec(t *testing.T) {
	spec, err := parseSpec(t)
	if err != nil || spec.UpdateConfig != nil || spec.RollbackConfig != nil {
		t.Fatalf("no flags: %v, configs %v / %v; want none", err, spec.GetUpdateConfig(), spec.GetRollbackConfig())
	}
	spec, err = parseSpec(t, "--replicas", "4",
		"--update-parallelism", "2", "--update-delay", "10s", "--update-order", "start-first", "--update-failure-action", "rollback",
		"--update-monitor", "30s", "--update-max-failure-ratio", "0.25", "--update-canary", "1", "--update-auto-promote", "2m",
		"--rollback-parallelism", "0", "--rollback-delay", "1s", "--rollback-order", "start-first", "--rollback-failure-action", "continue",
		"--rollback-monitor", "3s", "--rollback-max-failure-ratio", "1")
	if err != nil {
		t.Fatal(err)
	}
	wantUpdate := &shoalpb.UpdateConfig{Parallelism: 2, DelayMs: 10_000, Order: shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST,
		FailureAction: shoalpb.FailureAction_FAILURE_ACTION_ROLLBACK, MonitorMs: 30_000, MaxFailureRatio: 0.25, Canary: 1, AutoPromoteMs: 120_000}
	wantRollback := &shoalpb.UpdateConfig{Parallelism: 0, DelayMs: 1000, Order: shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST,
		FailureAction: shoalpb.FailureAction_FAILURE_ACTION_CONTINUE, MonitorMs: 3000, MaxFailureRatio: 1}
	if !proto.Equal(spec.UpdateConfig, wantUpdate) || !proto.Equal(spec.RollbackConfig, wantRollback) {
		t.Fatalf("update config %v\nwant %v\nrollback config %v\nwant %v", spec.UpdateConfig, wantUpdate, spec.RollbackConfig, wantRollback)
	}
	// One flag of a set: the rest of that config is the defaults.
	spec, err = parseSpec(t, "--update-order", "start-first")
	want := servicespec.DefaultUpdateConfig()
	want.Order = shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST
	if err != nil || !proto.Equal(spec.UpdateConfig, want) || spec.RollbackConfig != nil {
		t.Fatalf("--update-order alone: %v, configs %v / %v; want %v and no rollback config", err, spec.GetUpdateConfig(), spec.GetRollbackConfig(), want)
	}
}

// An update changes only the rollout flags given, in the config they name.
func TestRolloutUpdateChangesOnlyWhatIsGiven(t *testing.T) {
	stored, err := parseSpec(t, "--update-parallelism", "3", "--update-order", "start-first", "--rollback-monitor", "1s")
	if err != nil {
		t.Fatal(err)
	}
	var f specFlags
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	f.registerScalars(fs)
	if err := fs.Parse([]string{"--update-delay", "5s", "--rollback-failure-action", "continue"}); err != nil {
		t.Fatal(err)
	}
	spec := proto.Clone(stored).(*shoalpb.ServiceSpec)
	if err := f.applyScalars(spec, fs, false); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(stored).(*shoalpb.ServiceSpec)
	want.UpdateConfig.DelayMs = 5000
	want.RollbackConfig.FailureAction = shoalpb.FailureAction_FAILURE_ACTION_CONTINUE
	sameSpec(t, spec, want)
	if stored.UpdateConfig.DelayMs != 0 {
		t.Fatal("the update changed the stored spec it started from")
	}
}

// Bad rollout flag values are refused naming the flag and the choices.
func TestRolloutFlagsRefuseBadInput(t *testing.T) {
	cases := []struct {
		args    []string
		errPart string
	}{
		{[]string{"--update-order", "first"}, `--update-order "first": use start-first or stop-first`},
		{[]string{"--rollback-order", "stop"}, `--rollback-order "stop": use start-first or stop-first`},
		{[]string{"--update-failure-action", "retry"}, `--update-failure-action "retry": use pause, continue or rollback`},
		{[]string{"--rollback-failure-action", "rollback"}, `--rollback-failure-action "rollback": a rollback cannot roll back; use pause or continue`},
		{[]string{"--rollback-failure-action", "stop"}, `--rollback-failure-action "stop": use pause or continue`},
	}
	for _, c := range cases {
		_, err := parseSpec(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("%q: got %v, want an error containing %q", c.args, err, c.errPart)
		}
	}
	// Rollbacks have no canaries.
	var f specFlags
	fs := pflag.NewFlagSet("create", pflag.ContinueOnError)
	f.registerScalars(fs)
	if err := fs.Parse([]string{"--rollback-canary", "1"}); err == nil {
		t.Error("--rollback-canary was accepted")
	}
}

// Every spec flag of `service create` can be changed by `service update`,
// itself or as its -add/-rm forms; only the name and mode are fixed.
func TestEveryCreateFlagHasAnUpdateForm(t *testing.T) {
	create := newServiceCreateCmd(&globals{}).Flags()
	update := newServiceUpdateCmd(&globals{}).Flags()
	create.VisitAll(func(fl *pflag.Flag) {
		switch fl.Name {
		case "name", "mode":
			return
		}
		if update.Lookup(fl.Name) == nil && (update.Lookup(fl.Name+"-add") == nil || update.Lookup(fl.Name+"-rm") == nil) {
			t.Errorf("create has --%s, update has neither it nor --%s-add/--%s-rm", fl.Name, fl.Name, fl.Name)
		}
	})
}

// `service update --env-file` adds and changes variables like --env-add,
// which wins over the file.
func TestUpdateEnvFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(file, []byte("LOG=info\nNEW=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := newSpec()
	spec.Task.Container.Env = []string{"LOG=debug", "KEEP=x"}
	u := &updateFlags{envFile: []string{file}, envAdd: []string{"NEW=2"}}
	if err := u.apply(spec, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(spec.Task.Container.Env, " "); got != "KEEP=x LOG=info NEW=2" {
		t.Fatalf("env %q, want KEEP=x LOG=info NEW=2", got)
	}
}
