package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/internal/testutil"
	shoalpb "shoal/proto"
)

// logClient serves n's TaskLogs on a loopback port and returns a client.
func logClient(t *testing.T, n *node) shoalpb.TaskLogsClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	shoalpb.RegisterTaskLogsServer(srv, NewLogServer(n.e))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return shoalpb.NewTaskLogsClient(conn)
}

// readLogs reads a non-following request to its end.
func readLogs(t *testing.T, n *node, req *shoalpb.TaskLogsRequest) ([]*shoalpb.LogMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := logClient(t, n).Read(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*shoalpb.LogMessage
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, msg)
	}
}

func texts(msgs []*shoalpb.LogMessage) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Stream+":"+string(m.Line))
	}
	return out
}

// awaitLog polls the task's log until a stdout line equals want.
func awaitLog(t *testing.T, n *node, id, want string) {
	t.Helper()
	testutil.Eventually(t, testTimeout, func() error {
		msgs, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{id}, Tail: -1})
		if err != nil {
			return err
		}
		for _, l := range texts(msgs) {
			if l == "stdout:"+want {
				return nil
			}
		}
		return fmt.Errorf("log of %s is %q, want a line %q", id, texts(msgs), want)
	})
}

func TestLogsTailAndSince(t *testing.T) {
	n := startNode(t, "")
	n.e.Assign(fullSet(newTask("talk", "sh", "-c", `for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2`)))
	n.awaitState("talk", complete)

	all, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"talk"}, Tail: -1})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	// Each stream's lines are in order; the two streams may interleave.
	got := texts(all)
	var stdout []string
	for _, l := range got {
		if strings.HasPrefix(l, "stdout:") {
			stdout = append(stdout, l)
		}
	}
	if len(got) != 6 || !equal(stdout, []string{"stdout:line1", "stdout:line2", "stdout:line3", "stdout:line4", "stdout:line5"}) || !contains(got, "stderr:oops") {
		t.Fatalf("all lines: %q", got)
	}
	m := all[0]
	if m.TaskId != "talk" || m.TaskName != "svc.1.talk" || m.NodeId != "node-1" || m.Timestamp == nil {
		t.Fatalf("message %v: want task talk named svc.1.talk on node-1 with a timestamp", m)
	}

	last, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"talk"}, Tail: 2})
	if err != nil || len(last) != 2 || !equal(texts(last), texts(all[4:])) {
		t.Fatalf("tail 2: %q, %v; want %q", texts(last), err, texts(all[4:]))
	}
	none, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"talk"}, Tail: 0})
	if err != nil || len(none) != 0 {
		t.Fatalf("tail 0: %q, %v; want nothing", texts(none), err)
	}
	since := all[2].Timestamp
	want := 0
	for _, m := range all {
		if !m.Timestamp.AsTime().Before(since.AsTime()) {
			want++
		}
	}
	from, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"talk"}, Tail: -1, Since: since})
	if err != nil || len(from) != want {
		t.Fatalf("since %v: %q, %v; want the %d lines from then on", since.AsTime(), texts(from), err, want)
	}
	for _, m := range from {
		if m.Timestamp.AsTime().Before(since.AsTime()) {
			t.Fatalf("since %v delivered a line of %v", since.AsTime(), m.Timestamp.AsTime())
		}
	}
	latest := all[0].Timestamp.AsTime()
	for _, m := range all {
		if m.Timestamp.AsTime().After(latest) {
			latest = m.Timestamp.AsTime()
		}
	}
	future, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"talk"}, Tail: -1, Since: timestamppb.New(latest.Add(1))})
	if err != nil || len(future) != 0 {
		t.Fatalf("since after the last line: %q, %v", texts(future), err)
	}
}

func TestLogsFollow(t *testing.T) {
	n := startNode(t, "")
	trigger := filepath.Join(t.TempDir(), "go")
	n.e.Assign(fullSet(newTask("slow", "sh", "-c",
		fmt.Sprintf(`echo first; while [ ! -e %s ]; do sleep 0.05; done; echo second; sleep 100`, trigger))))
	n.awaitState("slow", running)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := logClient(t, n).Read(ctx, &shoalpb.TaskLogsRequest{TaskIds: []string{"slow"}, Tail: -1, Follow: true})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	lines := make(chan string)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(lines)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			lines <- string(msg.Line)
		}
	})
	if l := <-lines; l != "first" {
		t.Fatalf("first followed line %q", l)
	}
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if l := <-lines; l != "second" {
		t.Fatalf("second followed line %q, want second", l)
	}
	// The follower ends when the task is forgotten.
	n.e.Assign(fullSet())
	for l := range lines {
		t.Fatalf("unexpected line %q", l)
	}
	wg.Wait()
}

func TestLogsOfUnknownTask(t *testing.T) {
	n := startNode(t, "")
	_, err := readLogs(t, n, &shoalpb.TaskLogsRequest{TaskIds: []string{"nope"}, Tail: -1})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Read of an unknown task: %v, want NotFound naming it", err)
	}
}

func TestTaskName(t *testing.T) {
	cases := []struct {
		task *shoalpb.Task
		want string
	}{
		{&shoalpb.Task{Id: "t1", ServiceName: "web", Slot: 3, NodeId: "n9"}, "web.3.t1"},
		{&shoalpb.Task{Id: "t1", ServiceName: "agent", NodeId: "n9"}, "agent.n9.t1"},
		{&shoalpb.Task{Id: "t1", ServiceName: "agent"}, "agent.self.t1"},
	}
	for _, c := range cases {
		if got := taskName(c.task, "self"); got != c.want {
			t.Fatalf("taskName(%v) = %q, want %q", c.task, got, c.want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}
