package hostprep

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sysctlMinimums are raised when lower: every kind node runs systemd, containerd and kubelet, which each
// take inotify instances from the host's shared per-user limit. With the default of 128, a handful of
// nodes exhausts it and the next node's systemd exits at once ("Failed to allocate manager object: Too
// many open files"). kind's known-issues page recommends at least these values.
var sysctlMinimums = []struct {
	key string
	min int64
}{
	{"fs.inotify.max_user_instances", 8192},
	{"fs.inotify.max_user_watches", 524288},
}

// SysctlConf is where the raised limits are persisted for the next boot.
const SysctlConf = "/etc/sysctl.d/90-starlab.conf"

// ensureSysctls raises the inotify limits kind nodes need, now and for later boots.
func (h host) ensureSysctls() error {
	var raise []string
	for _, s := range sysctlMinimums {
		path := filepath.Join("/proc/sys", strings.ReplaceAll(s.key, ".", "/"))
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", s.key, err)
		}
		cur, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil {
			return fmt.Errorf("parse sysctl %s=%q: %w", s.key, raw, err)
		}
		if cur >= s.min {
			continue
		}
		if os.Geteuid() != 0 {
			return fmt.Errorf("sysctl %s is %d, kind nodes need at least %d: run `sudo sysctl -w %s=%d`", s.key, cur, s.min, s.key, s.min)
		}
		if err := os.WriteFile(path, []byte(strconv.FormatInt(s.min, 10)), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%d: %w", s.key, s.min, err)
		}
		h.log.Info("raised sysctl for kind nodes", "key", s.key, "from", cur, "to", s.min)
		raise = append(raise, fmt.Sprintf("%s = %d", s.key, s.min))
	}
	if len(raise) == 0 {
		return nil
	}
	conf := "# Written by starlab (internal/hostprep): inotify limits for kind nodes.\n" + strings.Join(raise, "\n") + "\n"
	if err := writeFileAtomic(SysctlConf, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("persist sysctls: %w", err)
	}
	return nil
}
