package e2e

import "syscall"

// childSysProcAttr has the kernel kill a child when the test binary dies,
// so that a panic or `go test -timeout`, which skip t.Cleanup, leave no
// process behind either.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
