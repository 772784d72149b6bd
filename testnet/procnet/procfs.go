package procnet

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is a process's own resource accounting, read from Linux's /proc.
type Usage struct {
	// PeakRSS is the high-water mark of resident memory (VmHWM); RSS the current value (VmRSS).
	PeakRSS, RSS int64
	// CPU is user plus system time consumed so far.
	CPU time.Duration
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// Usage reads node i's resource usage while it runs (Linux only).
func (nw *Network) Usage(i int) (Usage, error) {
	pid := nw.PID(i)
	if pid == 0 {
		return Usage{}, fmt.Errorf("procnet: node%d is not running", i)
	}
	return ReadUsage(pid)
}

// ReadUsage reads a live process's peak and current RSS and its CPU time from /proc.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return u, fmt.Errorf("procnet: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "VmHWM":
			u.PeakRSS, err = parseKB(val)
		case "VmRSS":
			u.RSS, err = parseKB(val)
		}
		if err != nil {
			return u, fmt.Errorf("procnet: /proc/%d/status %s: %w", pid, key, err)
		}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u, fmt.Errorf("procnet: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after its closing parenthesis are
	// space separated, starting with field 3 (state). utime and stime are fields 14 and 15.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return u, fmt.Errorf("procnet: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("procnet: /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("procnet: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	u.CPU = time.Duration(utime+stime) * clockTick
	return u, nil
}

func parseKB(s string) (int64, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB"))
	kb, err := strconv.ParseInt(s, 10, 64)
	return kb << 10, err
}
