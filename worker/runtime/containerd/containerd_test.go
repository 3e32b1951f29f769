package containerd

import (
	"slices"
	"testing"
)

func TestRunLogsExitCode(t *testing.T) {
	r := newRuntime(t, Config{})
	loadApp(t, r)
	h := start(t, r, newTask("run1", "echo", "3", "hello", "world"))
	if info := h.Info(); info.PID == 0 || info.ContainerID != "run1" {
		t.Errorf("Info = %+v, want a PID and container ID run1", info)
	}
	st := wait(t, h)
	if st.Code != 3 || st.Signal != "" || st.Err != "" || st.OOMKilled {
		t.Errorf("exit status = %+v, want code 3", st)
	}
	lines := logLines(t, r, "run1")
	for _, want := range []string{"stdout: out: hello world", "stderr: err: hello world"} {
		if !slices.Contains(lines, want) {
			t.Errorf("log lines %q lack %q", lines, want)
		}
	}
}
