package procnet

import "syscall"

// sysProcAttr puts a child in its own process group (so a terminal's Ctrl-C reaches only the
// parent, which then stops its children in order) and asks the kernel to kill it if the parent
// dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
