package process

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"shoal/internal/jsonfile"
	"shoal/worker/runtime"
)

func readPID(dir string) (procInfo, bool) {
	var info procInfo
	ok := jsonfile.Read(filepath.Join(dir, pidFile), &info) == nil
	return info, ok && info.PID > 0
}

func readExit(dir string) (runtime.ExitStatus, bool) {
	var st runtime.ExitStatus
	ok := jsonfile.Read(filepath.Join(dir, exitFile), &st) == nil
	return st, ok
}

// procStat returns the state letter and start time (field 22) of pid.
func procStat(pid int) (state byte, start uint64, err error) {
	fields, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return 0, 0, err
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// statFields are the fields of /proc/PID/stat from the third on (the state
// is fields[0], the process group fields[2], the start time fields[19]).
func statFields(pid string) ([]string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// so fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%s/stat: malformed", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return nil, fmt.Errorf("/proc/%s/stat: malformed", pid)
	}
	return fields, nil
}

// groupMembers lists the processes of process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	group := strconv.Itoa(pgid)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fields, err := statFields(d.Name())
		if err == nil && fields[2] == group {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is still the process that started at start and
// has not exited (a zombie has).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, got, err := procStat(pid)
	return err == nil && got == start && state != 'Z' && state != 'X'
}

// tailOf is the last few hundred bytes of a file, for error messages.
func tailOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "no output"
	}
	b = bytes.TrimSpace(b)
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	return string(b)
}
