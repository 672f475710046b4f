//go:build !linux

package e2e

import "syscall"

// childSysProcAttr is nil where there is no parent-death signal; t.Cleanup
// still stops every child.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
