package procs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestFindsItsOwnProcessAndAChild(t *testing.T) {
	self := Find(func(c string) bool { return strings.Contains(c, os.Args[0]) })
	if _, ok := self[os.Getpid()]; !ok {
		t.Fatalf("Find did not find the test process %d among %v", os.Getpid(), self)
	}
	cmd := exec.Command("sleep", "30.123")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	got := Find(func(c string) bool { return c == "sleep 30.123" })
	if len(got) != 1 || got[cmd.Process.Pid] != "sleep 30.123" {
		t.Fatalf("Find(sleep 30.123) = %v, want only pid %d", got, cmd.Process.Pid)
	}
}
