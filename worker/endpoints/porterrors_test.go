package endpoints

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	shoalpb "shoal/proto"
	"shoal/worker/mesh"
)

// A published port another process holds is reported with its error; once
// the process lets it go, Run's retry publishes it and reports the empty set.
func TestRunReportsPortErrorsAndRetries(t *testing.T) {
	held, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	port := uint32(held.Addr().(*net.TCPAddr).Port)

	m := mesh.New(mesh.Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { m.Close() })
	tab := New()
	reports := make(chan []*shoalpb.PortError, 16)
	done := make(chan struct{})
	ctx := t.Context()
	go func() {
		defer close(done)
		tab.Run(ctx, Sinks{Mesh: m.Update, PortErrors: func(pe []*shoalpb.PortError) { reports <- pe }}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { <-done })

	svc := &shoalpb.ServiceEndpoints{ServiceId: "s1", Name: "web", Ports: []*shoalpb.PortConfig{
		{Protocol: "tcp", TargetPort: 80, PublishedPort: port, Mode: shoalpb.PublishMode_PUBLISH_MODE_INGRESS},
	}}
	tab.Apply(&shoalpb.EndpointsMessage{Complete: true, Services: []*shoalpb.ServiceEndpoints{svc}})
	next := func(why string) []*shoalpb.PortError {
		t.Helper()
		select {
		case pe := <-reports:
			return pe
		case <-time.After(30 * time.Second):
			t.Fatalf("no port error report: %s", why)
		}
		return nil
	}
	pe := next("the held port")
	if len(pe) != 1 || pe[0].GetPort() != port || pe[0].GetProtocol() != "tcp" || !strings.Contains(pe[0].GetError(), "already in use") {
		t.Fatalf("port errors %v, want port %d/tcp already in use", pe, port)
	}

	held.Close()
	if pe := next("the freed port"); len(pe) != 0 {
		t.Fatalf("port errors %v after the port was freed, want none", pe)
	}
	if st := m.Stats(); len(st) != 1 || uint32(st[0].Published) != port {
		t.Fatalf("mesh ports %+v, want %d published", st, port)
	}
	select {
	case pe := <-reports:
		t.Fatalf("reported again (%v) with nothing changed", pe)
	default:
	}
}
