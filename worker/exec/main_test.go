package exec

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
)

// listenTaskEnv makes the test binary a task that serves TCP instead of
// running the tests (listenTask).
const listenTaskEnv = "SHOAL_EXEC_TEST_LISTEN"

func TestMain(m *testing.M) {
	if os.Getenv(listenTaskEnv) != "" {
		if err := listenTask(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// listenTask listens on 127.0.0.1, writes its port to $PORT_FILE, holds
// every connection until its client closes it, and on SIGTERM writes
// "TERM" to $SIGNAL_FILE and exits 0.
func listenTask() error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	portFile := os.Getenv("PORT_FILE")
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	// Renamed into place: the test never reads half a port.
	if err := os.WriteFile(portFile+".tmp", []byte(port), 0o644); err != nil {
		return err
	}
	if err := os.Rename(portFile+".tmp", portFile); err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	<-term
	return os.WriteFile(os.Getenv("SIGNAL_FILE"), []byte("TERM"), 0o644)
}
