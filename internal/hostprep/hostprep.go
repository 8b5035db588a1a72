// Package hostprep makes this host able to run kind nodes offline.
//
// Ensure checks, and on Debian as root repairs, everything a lab needs from the host:
//   - a Docker engine that answers (apt-get install docker.io when dockerd is missing, then start dockerd
//     in the background, logging to /var/log/starlab-dockerd.log);
//   - privileged containers start (kind always runs nodes with --privileged). When they fail because the
//     capability bounding set lacks capabilities the kernel knows (CAP_SYS_RESOURCE on some VMs), a runc
//     wrapper (/usr/local/sbin/starlab-runc) is installed as docker's default runtime and docker reloads its
//     configuration with SIGHUP (no restart, running containers are untouched);
//   - debootstrap and jq (node image builds), and /lib/modules (kind mounts it into nodes);
//   - inotify limits high enough for many kind nodes (fs.inotify.max_user_instances >= 8192,
//     max_user_watches >= 524288; persisted in /etc/sysctl.d/90-starlab.conf).
//
// Nothing is pulled: the privileged probe runs a 129-byte static ELF that exits 0, imported as
// localhost/starlab/hostprobe. On other systems, or when not root, Ensure returns an error that names what
// is missing and how to get it.
package hostprep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Paths and names hostprep uses on the host.
const (
	DockerdLog     = "/var/log/starlab-dockerd.log"
	DaemonJSON     = "/etc/docker/daemon.json"
	RuncWrapper    = "/usr/local/sbin/starlab-runc"
	RuntimeName    = "starlab-runc"
	ProbeImage     = "localhost/starlab/hostprobe:v1"
	dockerdPIDFile = "/var/run/docker.pid"
	modulesDir     = "/lib/modules"
)

// Ensure makes the host ready for kind nodes built offline; it is idempotent and cheap when all is in place.
func Ensure(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	h := host{log: log}
	if err := h.ensureDocker(ctx); err != nil {
		return err
	}
	if err := h.ensureTools(ctx); err != nil {
		return err
	}
	if err := h.ensureSysctls(); err != nil {
		return err
	}
	if err := os.MkdirAll(modulesDir, 0o755); err != nil {
		return fmt.Errorf("create %s (kind mounts it into nodes): %w", modulesDir, err)
	}
	return h.ensurePrivileged(ctx)
}

type host struct {
	log *slog.Logger
}

// canRepair reports whether we may install packages and start daemons here, and if not, why.
func canRepair() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		return errors.New("not a Debian-based system (no /etc/debian_version)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("apt-get not found")
	}
	return nil
}

func (h host) ensureDocker(ctx context.Context) error {
	if _, err := dockerServerVersion(ctx); err == nil {
		return nil
	}
	if _, err := exec.LookPath("docker"); err != nil {
		if why := canRepair(); why != nil {
			return fmt.Errorf("docker CLI not found and cannot install it (%v): install Docker Engine (https://docs.docker.com/engine/install/) and make sure `docker info` works", why)
		}
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		if why := canRepair(); why != nil {
			return fmt.Errorf("no Docker engine answers and dockerd is not installed (%v): install Docker Engine (https://docs.docker.com/engine/install/) and start it", why)
		}
		h.log.Info("installing docker.io with apt-get")
		if err := aptInstall(ctx, "docker.io"); err != nil {
			return err
		}
	}
	if _, err := dockerServerVersion(ctx); err == nil {
		return nil // the package's own service may have started it
	}
	if os.Geteuid() != 0 {
		return errors.New("no Docker engine answers `docker info` and starting dockerd needs root: start it (e.g. `sudo systemctl start docker`) or run starlab as root")
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		// systemd is init: let it own the daemon.
		h.log.Info("starting docker with systemctl")
		out, err := run(ctx, "systemctl", "start", "docker")
		if err != nil {
			return fmt.Errorf("systemctl start docker: %w: %s (see journalctl -u docker)", err, tail(out))
		}
		for i := 0; i < 60; i++ {
			if _, err := dockerServerVersion(ctx); err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for docker: %w", ctx.Err())
			case <-time.After(time.Second):
			}
		}
		return errors.New("docker started by systemd does not answer `docker info` after 60s: see journalctl -u docker")
	}
	return h.startDockerd(ctx)
}

// startDockerd starts dockerd in its own session so it outlives this process, then waits until it answers.
func (h host) startDockerd(ctx context.Context) error {
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		return fmt.Errorf("find dockerd: %w", err)
	}
	logf, err := os.OpenFile(DockerdLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open dockerd log %s: %w", DockerdLog, err)
	}
	defer logf.Close()
	// Not CommandContext: the daemon must keep running after ctx ends and after we exit.
	cmd := exec.Command(dockerd)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = detachedProcAttr()
	closeInheritedOnExec()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", dockerd, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	h.log.Info("started dockerd", "pid", pid, "log", DockerdLog)

	deadline := time.NewTimer(90 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for dockerd (pid %d) to answer: %w", pid, ctx.Err())
		case err := <-exited:
			return fmt.Errorf("dockerd exited early (%v): see %s", err, DockerdLog)
		case <-deadline.C:
			return fmt.Errorf("dockerd (pid %d) did not answer `docker info` within 90s: see %s", pid, DockerdLog)
		case <-tick.C:
			if v, err := dockerServerVersion(ctx); err == nil {
				h.log.Info("docker engine answers", "version", v)
				return nil
			}
		}
	}
}

func (h host) ensureTools(ctx context.Context) error {
	var missing []string
	for _, tool := range []struct{ bin, pkg string }{{"debootstrap", "debootstrap"}, {"jq", "jq"}, {"bash-static", "bash-static"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			missing = append(missing, tool.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if why := canRepair(); why != nil {
		return fmt.Errorf("missing %s and cannot install (%v): install the package(s) %s", strings.Join(missing, ", "), why, strings.Join(missing, " "))
	}
	h.log.Info("installing packages with apt-get", "packages", missing)
	return aptInstall(ctx, missing...)
}

// aptInstall installs packages, running apt-get update once if the first try fails.
func aptInstall(ctx context.Context, pkgs ...string) error {
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if _, err := run(ctx, "apt-get", args...); err == nil {
		return nil
	}
	if out, err := run(ctx, "apt-get", "update"); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, tail(out))
	}
	if out, err := run(ctx, "apt-get", args...); err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(pkgs, " "), err, tail(out))
	}
	return nil
}

func dockerServerVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := run(ctx, "docker", "info", "--format", "{{.ServerVersion}}")
	v := strings.TrimSpace(out)
	if err != nil || v == "" {
		return "", fmt.Errorf("docker info: %v: %s", err, tail(out))
	}
	return v, nil
}

// run executes a command with a minimal non-interactive environment and returns combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// tail returns the last lines of command output for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}
