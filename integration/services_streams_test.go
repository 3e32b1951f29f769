package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// talker is a task that writes three lines, then runs until it is stopped.
var talker = []string{"busybox", "sh", "-c", "echo one; echo two; echo three; exec sleep 1000"}

// collected gathers what a server stream sends until it ends (collect).
type collected[T any] struct {
	mu    sync.Mutex
	items []T
	err   error
}

// collect receives with recv on a goroutine of its own until it fails.
func collect[T any](recv func() (T, error)) *collected[T] {
	c := &collected[T]{}
	go func() {
		for {
			item, err := recv()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			c.items = append(c.items, item)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collected[T]) snapshot() ([]T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.items...), c.err
}

// `events` streams node, service and task changes, filtered by type and
// service; `service logs` merges every task's lines with --tail and
// --timestamps, follows tasks that start later, and when a node cannot be
// read prints the rest and names the node.
func TestServiceEventsAndLogs(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 2)
	m := c.Managers[0]
	api := controlAPI(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	svcStream, err := api.Events(ctx, &shoalpb.EventsRequest{Filters: map[string]string{"type": "service"}})
	if err != nil {
		t.Fatalf("events --filter type=service: %v", err)
	}
	taskStream, err := api.Events(ctx, &shoalpb.EventsRequest{Filters: map[string]string{"type": "task", "service": "talk"}})
	if err != nil {
		t.Fatalf("events --filter type=task --filter service=talk: %v", err)
	}
	svcEvents, taskEvents := collect(svcStream.Recv), collect(taskStream.Recv)
	_, err = m.Shoal(t, "events", "--filter", "colour=red")
	wantError(t, "events --filter colour=red", err, "colour", "type, service or node")

	onWorkers := []string{"--constraint", "node.role==worker", "--replicas-max-per-node", "1"}
	mustShoal(t, m, append(append([]string{"service", "create", "--name", "talk", "--replicas", "2"}, onWorkers...), talker...)...)
	mustShoal(t, m, append([]string{"service", "create", "--name", "other", "--replicas", "1"}, sleeper...)...)
	talk := convergedNow(t, api, "talk", 2, "service create")

	testutil.Eventually(t, convergeTimeout, func() error {
		events, err := svcEvents.snapshot()
		if err != nil {
			return err
		}
		created := map[string]bool{}
		for _, e := range events {
			if e.Type != "service" {
				t.Fatalf("events --filter type=service sent %v", e)
			}
			if e.Action == "create" {
				created[e.Name] = true
			}
		}
		if !created["talk"] || !created["other"] {
			return fmt.Errorf("service events %v: want the creation of talk and other", events)
		}
		return nil
	})
	testutil.Eventually(t, convergeTimeout, func() error {
		events, err := taskEvents.snapshot()
		if err != nil {
			return err
		}
		running := map[string]bool{}
		for _, e := range events {
			if e.Type != "task" || e.Attributes["service"] != "talk" || !strings.HasPrefix(e.Name, "talk.") {
				t.Fatalf("events --filter type=task --filter service=talk sent %v", e)
			}
			if e.Attributes["state"] == "running" {
				running[e.Id] = true
			}
		}
		for _, task := range talk {
			if !running[task.Id] {
				return fmt.Errorf("task events %v: none says task %s runs", events, task.Id)
			}
		}
		return nil
	})

	// --tail 1: the last line of each task; --timestamps: each line starts
	// with the time it was written.
	testutil.Eventually(t, convergeTimeout, func() error {
		out, err := m.Shoal(t, "service", "logs", "--tail", "1", "--timestamps", "talk")
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(talk) {
			return fmt.Errorf("service logs --tail 1 talk printed %d lines, want one per task (%d):\n%s", len(lines), len(talk), out)
		}
		for _, line := range lines {
			stamp, rest, _ := strings.Cut(line, " ")
			if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil {
				t.Fatalf("service logs --timestamps printed %q: it does not start with a timestamp: %v", line, err)
			}
			if !strings.HasPrefix(rest, "talk.") || !strings.HasSuffix(rest, "| three") {
				return fmt.Errorf("service logs --tail 1 talk printed %q, want a task's last line, three", line)
			}
		}
		return nil
	})

	// Following: a task started after the request is followed from its
	// first line.
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	follow, err := api.ServiceLogs(followCtx, &shoalpb.ServiceLogsRequest{Service: "talk", Follow: true, Tail: 0})
	if err != nil {
		t.Fatalf("service logs -f talk: %v", err)
	}
	followed := collect(follow.Recv)
	mustShoal(t, m, "service", "update", "--replicas-max-per-node", "2", "talk")
	mustShoal(t, m, "service", "scale", "talk=3")
	third := waitConverged(t, api, "talk", 3, convergeTimeout)[2]
	testutil.Eventually(t, convergeTimeout, func() error {
		msgs, err := followed.snapshot()
		if err != nil {
			return err
		}
		var lines []string
		for _, msg := range msgs {
			if l := msg.GetLog(); l != nil && strings.HasSuffix(l.TaskName, third.Id) {
				lines = append(lines, string(l.Line))
			}
		}
		if strings.Join(lines, ",") != "one,two,three" {
			return fmt.Errorf("service logs -f followed %v of task %s (started after the request), want one,two,three", lines, third.Id)
		}
		return nil
	})
	stopFollow()

	// A worker gone: the logs of the other nodes still come, and the
	// command fails naming the node it could not read.
	dead := c.Workers[1]
	deadID := dead.ID(t)
	dead.Kill(t)
	testutil.Eventually(t, moveTimeout, func() error {
		out, err := m.Shoal(t, "service", "logs", "talk")
		var cliErr *testutil.CLIError
		if !errors.As(err, &cliErr) {
			return fmt.Errorf("service logs talk with worker %s dead: err %v, want the command to fail", deadID, err)
		}
		if !strings.Contains(cliErr.Stderr, deadID) || !strings.Contains(cliErr.Stderr, "could not be read") && !strings.Contains(cliErr.Stderr, "is down") {
			return fmt.Errorf("service logs talk said %q, want the dead node %s named", cliErr.Stderr, deadID)
		}
		if !strings.Contains(out, "| three") {
			return fmt.Errorf("service logs talk printed %q: the other nodes' lines are missing", out)
		}
		return nil
	})
}
