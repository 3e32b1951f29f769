// Command meshproxy runs one routing mesh port in a process of its own, so
// that bench/mesh_test.go measures the mesh on its own CPU share, as a node
// runs it, and not inside the Go benchmark process.
//
//	meshproxy -port 8080 -mode http -backend 127.0.0.1:9001 -backend 127.0.0.1:9002
//
// It prints "ready" once the port listens and serves until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"shoal/worker/mesh"
)

type addrs []netip.AddrPort

func (a *addrs) String() string { return fmt.Sprint(*a) }
func (a *addrs) Set(s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return err
	}
	*a = append(*a, ap)
	return nil
}

func main() {
	var backends addrs
	host := flag.String("listen", "127.0.0.1", "address to listen on")
	port := flag.Uint("port", 0, "published port")
	mode := flag.String("mode", "tcp", "tcp or http")
	flag.Var(&backends, "backend", "backend address ip:port (repeat)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until stopped")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "meshproxy:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *port == 0 || *port > 65535 || len(backends) == 0 {
		fmt.Fprintln(os.Stderr, "meshproxy: -port and at least one -backend are required")
		os.Exit(2)
	}
	p := mesh.Port{Published: uint16(*port), Protocol: "tcp", Service: "bench"}
	switch strings.ToLower(*mode) {
	case "tcp":
	case "http":
		p.Mode = mesh.ModeHTTP
	default:
		fmt.Fprintf(os.Stderr, "meshproxy: -mode %q: use tcp or http\n", *mode)
		os.Exit(2)
	}
	for i, b := range backends {
		p.Backends = append(p.Backends, mesh.Backend{ID: "task-" + strconv.Itoa(i), Addr: b})
	}
	m := mesh.New(mesh.Config{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ListenHost: *host,
	})
	if errs := m.Update([]mesh.Port{p}); len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "meshproxy:", errs[p.Published])
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	m.Close()
}
