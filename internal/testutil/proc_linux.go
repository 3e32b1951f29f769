package testutil

import "syscall"

// sysProcAttr puts the daemon in its own process group, so Kill also ends
// whatever it started, and kills it if the test process dies first (a test
// binary killed by -timeout must not leave daemons holding addresses).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
