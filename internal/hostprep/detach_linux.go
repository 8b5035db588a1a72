package hostprep

import (
	"os"
	"strconv"
	"syscall"
)

func detachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec, so a daemon we start gets
// none of what this process inherited (Go opens its own files close-on-exec, but not what a parent
// left open: a `flock` lock or a CI runner's output pipe would otherwise stay open in dockerd for
// as long as it runs, holding the lock or keeping the runner waiting for end of file).
func closeInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
