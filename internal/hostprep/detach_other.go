//go:build !linux

package hostprep

import "syscall"

func detachedProcAttr() *syscall.SysProcAttr { return nil }

func closeInheritedOnExec() {}
