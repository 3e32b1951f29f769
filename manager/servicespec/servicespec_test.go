package servicespec

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func spec(image string, replicas uint64) *shoalpb.ServiceSpec {
	s := &shoalpb.ServiceSpec{Name: "web", Replicas: replicas, Task: &shoalpb.TaskSpec{Container: &shoalpb.ContainerSpec{Image: image}}}
	FillDefaults(s)
	return s
}

func TestReplaceStartsARolloutOnlyWhenTheTaskSpecChanges(t *testing.T) {
	now := time.Unix(1000, 0)
	svc := &shoalpb.Service{Id: "s", Spec: spec("v1", 3), SpecVersion: 4}
	scaled := Replace(svc, spec("v1", 5), shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)
	if scaled.SpecVersion != 5 || scaled.UpdateStatus != nil {
		t.Fatalf("scale: version %d, status %v; want 5 and no rollout", scaled.SpecVersion, scaled.UpdateStatus)
	}
	upd := Replace(scaled, spec("v2", 5), shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)
	st := upd.UpdateStatus
	if st.GetState() != shoalpb.UpdateState_UPDATE_STATE_UPDATING || st.FromVersion != 5 || st.ToVersion != 6 || !st.StartedAt.AsTime().Equal(now) {
		t.Fatalf("update status %v; want UPDATING from 5 to 6 at %v", st, now)
	}
	if got := upd.PreviousSpecs; len(got) != 2 || got[0].Version != 5 || got[1].Version != 4 {
		t.Fatalf("kept %v; want versions 5, 4", got)
	}
	if svc.SpecVersion != 4 || len(svc.PreviousSpecs) != 0 {
		t.Fatal("Replace changed its input")
	}
}

func TestReplaceKeepsAtMostMaxHistorySpecs(t *testing.T) {
	svc := &shoalpb.Service{Spec: spec("v0", 1)}
	for i := range MaxHistory + 5 {
		svc = Replace(svc, spec(strings.Repeat("v", i+2), 1), shoalpb.UpdateState_UPDATE_STATE_UPDATING, time.Now())
	}
	if len(svc.PreviousSpecs) != MaxHistory || svc.PreviousSpecs[0].Version != svc.SpecVersion-1 {
		t.Fatalf("kept %d specs, newest %d; want %d, newest %d", len(svc.PreviousSpecs), svc.PreviousSpecs[0].Version, MaxHistory, svc.SpecVersion-1)
	}
}

func TestRollback(t *testing.T) {
	now := time.Unix(2000, 0)
	svc := &shoalpb.Service{Spec: spec("v1", 3), SpecVersion: 1}
	svc = Replace(svc, spec("v2", 3), shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)
	svc = Replace(svc, spec("v3", 3), shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)

	back, err := Rollback(svc, 0, "by hand", now)
	if err != nil {
		t.Fatal(err)
	}
	if back.Spec.Task.Container.Image != "v2" || back.SpecVersion != 4 {
		t.Fatalf("rolled back to %s at version %d; want v2 at 4", back.Spec.Task.Container.Image, back.SpecVersion)
	}
	if st := back.UpdateStatus; st.State != shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED || st.FromVersion != 3 || st.Message != "by hand" {
		t.Fatalf("status %v; want ROLLBACK_STARTED from 3, message kept", st)
	}
	if !RollingBack(back) {
		t.Fatal("RollingBack is false during a rollback")
	}

	first, err := Rollback(svc, 1, "", now)
	if err != nil || first.Spec.Task.Container.Image != "v1" {
		t.Fatalf("--to-version 1: %v, image %s", err, first.GetSpec().GetTask().GetContainer().GetImage())
	}

	if _, err := Rollback(svc, 9, "", now); err == nil || !strings.Contains(err.Error(), "keeps versions 2, 1") {
		t.Fatalf("unknown version: %v; want the kept versions named", err)
	}
	if _, err := Rollback(&shoalpb.Service{Spec: spec("v1", 1)}, 0, "", now); err == nil {
		t.Fatal("a service without history rolled back")
	}
}

func TestRollbackToTheSameTaskSpecIsComplete(t *testing.T) {
	now := time.Unix(3000, 0)
	svc := &shoalpb.Service{Spec: spec("v1", 3), SpecVersion: 1}
	svc = Replace(svc, spec("v1", 5), shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)
	back, err := Rollback(svc, 0, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if back.UpdateStatus.State != shoalpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED || back.Spec.Replicas != 3 {
		t.Fatalf("status %v, replicas %d; want ROLLBACK_COMPLETED and 3", back.UpdateStatus, back.Spec.Replicas)
	}
}

func TestRolloutConfig(t *testing.T) {
	now := time.Unix(4000, 0)
	v1 := spec("v1", 3)
	v1.RollbackConfig.Parallelism = 7
	v2 := spec("v2", 3)
	v2.UpdateConfig.Order = shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST
	v2.RollbackConfig.Parallelism = 2
	svc := Replace(&shoalpb.Service{Spec: v1, SpecVersion: 1}, v2, shoalpb.UpdateState_UPDATE_STATE_UPDATING, now)
	if c := RolloutConfig(svc); c.Order != shoalpb.UpdateOrder_UPDATE_ORDER_START_FIRST {
		t.Fatalf("update config %v; want v2's", c)
	}
	back, err := Rollback(svc, 0, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if c := RolloutConfig(back); c.Parallelism != 2 {
		t.Fatalf("rollback config %v; want the rolled-back-from spec's (parallelism 2)", c)
	}
	if c := RolloutConfig(&shoalpb.Service{}); !proto.Equal(c, DefaultUpdateConfig()) {
		t.Fatalf("no config: %v; want the defaults", c)
	}
}
