package lab

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Every kind node runs systemd, containerd and a kubelet, each holding inotify instances of the host
// kernel (shared by all containers of the host's user namespace). With the default 128 instances per user,
// the kubelets of a third or fourth node fail with "inotify_init: too many open files" and never register
// (kind's known issue; measured here with three labs up). These are the limits a host needs.
var inotifyMinimums = []struct {
	key string
	min int
}{
	{"fs.inotify.max_user_instances", 1024},
	{"fs.inotify.max_user_watches", 524288},
}

// EnsureInotifyLimits raises the host's inotify limits to what several kind nodes need (root only). It
// never lowers a limit. It returns the sysctls it changed.
func EnsureInotifyLimits(log *slog.Logger) ([]string, error) {
	return ensureSysctlMinimums("/proc/sys", log)
}

func ensureSysctlMinimums(procSys string, log *slog.Logger) ([]string, error) {
	var changed []string
	for _, m := range inotifyMinimums {
		path := filepath.Join(procSys, strings.ReplaceAll(m.key, ".", "/"))
		data, err := os.ReadFile(path)
		if err != nil {
			return changed, fmt.Errorf("read %s: %w", m.key, err)
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return changed, fmt.Errorf("parse %s=%q: %w", m.key, data, err)
		}
		if cur >= m.min {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(m.min)), 0o644); err != nil {
			if errors.Is(err, os.ErrPermission) {
				return changed, fmt.Errorf("%s is %d, kind nodes need >= %d (kubelets fail with \"too many open files\"): run `sysctl -w %s=%d` as root", m.key, cur, m.min, m.key, m.min)
			}
			return changed, fmt.Errorf("raise %s from %d to %d: %w", m.key, cur, m.min, err)
		}
		log.Info("raised inotify limit for kind nodes", "sysctl", m.key, "from", cur, "to", m.min)
		changed = append(changed, fmt.Sprintf("%s=%d", m.key, m.min))
	}
	return changed, nil
}
