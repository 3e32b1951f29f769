//go:build !linux

package testutil

import "syscall"

// sysProcAttr puts the daemon in its own process group, so Kill also ends
// whatever it started.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
