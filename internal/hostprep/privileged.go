package hostprep

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"context"
)

//go:embed runc-wrapper.sh.tmpl
var wrapperTemplate string

// capNames are the Linux capability names by number (0..40).
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// ensurePrivileged checks that `docker run --privileged` works and installs the runc wrapper when it
// fails for lack of capabilities in the bounding set.
func (h host) ensurePrivileged(ctx context.Context) error {
	if err := ensureProbeImage(ctx); err != nil {
		return err
	}
	out, err := runProbe(ctx, true)
	if err == nil {
		return nil
	}
	if plain, perr := runProbe(ctx, false); perr != nil {
		return fmt.Errorf("no container starts (docker run %s): %w: %s", ProbeImage, perr, tail(plain))
	}
	if !strings.Contains(out, "apply caps") {
		return fmt.Errorf("privileged container does not start (docker run --privileged %s): %w: %s", ProbeImage, err, tail(out))
	}
	missing, cerr := missingCaps()
	if cerr != nil {
		return cerr
	}
	if len(missing) == 0 {
		return fmt.Errorf("privileged container fails to apply capabilities but the bounding set lacks none: %s", tail(out))
	}
	if why := canRepair(); why != nil {
		return fmt.Errorf("`docker run --privileged` fails because this host's capability bounding set lacks %s, and starlab cannot install its runc wrapper (%v): run as root on Debian, or run docker where the bounding set is full", strings.Join(missing, ","), why)
	}
	h.log.Info("privileged containers fail: installing runc wrapper as docker's default runtime", "missing_caps", missing, "wrapper", RuncWrapper)
	if err := installWrapper(missing); err != nil {
		return err
	}
	if err := mergeDaemonJSON(DaemonJSON); err != nil {
		return err
	}
	if err := reloadDockerd(ctx); err != nil {
		return err
	}
	if out, err := runProbe(ctx, true); err != nil {
		return fmt.Errorf("privileged container still fails after installing %s: %w: %s", RuncWrapper, err, tail(out))
	}
	h.log.Info("privileged containers work with the runc wrapper")
	return nil
}

func runProbe(ctx context.Context, privileged bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := []string{"run", "--rm", "--network", "none"}
	if privileged {
		args = append(args, "--privileged")
	}
	return run(ctx, "docker", append(args, ProbeImage)...)
}

// ensureProbeImage imports a one-file image holding a static ELF that exits 0.
func ensureProbeImage(ctx context.Context) error {
	if _, err := run(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ProbeImage); err == nil {
		return nil
	}
	elf, err := exitZeroELF(runtime.GOARCH)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "true", Mode: 0o755, Size: int64(len(elf)), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("probe image tar: %w", err)
	}
	if _, err := tw.Write(elf); err != nil {
		return fmt.Errorf("probe image tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("probe image tar: %w", err)
	}
	cmd := exec.CommandContext(ctx, "docker", "import", "--change", `ENTRYPOINT ["/true"]`, "-", ProbeImage)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import %s: %w: %s", ProbeImage, err, tail(string(out)))
	}
	return nil
}

// exitZeroELF returns a minimal static ELF64 executable that calls exit(0).
func exitZeroELF(arch string) ([]byte, error) {
	var machine uint16
	var code []byte
	switch arch {
	case "amd64":
		machine = 0x3e
		code = []byte{0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05} // xor edi,edi; mov eax,60; syscall
	case "arm64":
		machine = 0xb7
		code = binary.LittleEndian.AppendUint32(nil, 0xd2800000)  // mov x0, #0
		code = binary.LittleEndian.AppendUint32(code, 0xd2800ba8) // mov x8, #93
		code = binary.LittleEndian.AppendUint32(code, 0xd4000001) // svc #0
	default:
		return nil, fmt.Errorf("no probe program for architecture %s (supported: amd64, arm64)", arch)
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	size := uint64(ehsize + phsize + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+ehsize+phsize) // entry
	b = le.AppendUint64(b, ehsize)             // phoff
	b = le.AppendUint64(b, 0)                  // shoff
	b = le.AppendUint32(b, 0)                  // flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, 1) // phnum
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // R+X
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, code...), nil
}

// missingCaps lists the capabilities the kernel knows that are not in this process's bounding set.
func missingCaps() ([]string, error) {
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return nil, fmt.Errorf("read cap_last_cap: %w", err)
	}
	lastCap, err := strconv.Atoi(strings.TrimSpace(string(last)))
	if err != nil {
		return nil, fmt.Errorf("parse /proc/sys/kernel/cap_last_cap %q: %w", last, err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/status: %w", err)
	}
	return capsMissingFrom(string(status), lastCap)
}

func capsMissingFrom(status string, lastCap int) ([]string, error) {
	for _, line := range strings.Split(status, "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		bnd, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapBnd %q: %w", hex, err)
		}
		var missing []string
		for c := 0; c <= lastCap && c < len(capNames); c++ {
			if bnd&(1<<c) == 0 {
				missing = append(missing, capNames[c])
			}
		}
		return missing, nil
	}
	return nil, errors.New("no CapBnd line in /proc/self/status")
}

// renderWrapper renders the runc wrapper script for the given capabilities to drop.
func renderWrapper(drop []string, jq, runc string) (string, error) {
	quoted := make([]string, len(drop))
	for i, c := range drop {
		quoted[i] = `\"` + c + `\"`
	}
	tmpl, err := template.New("wrapper").Parse(wrapperTemplate)
	if err != nil {
		return "", fmt.Errorf("parse runc wrapper template: %w", err)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]string{
		"Pattern": strings.Join(drop, "|"),
		"Drop":    "[" + strings.Join(quoted, ",") + "]",
		"JQ":      jq,
		"Runc":    runc,
	})
	if err != nil {
		return "", fmt.Errorf("render runc wrapper: %w", err)
	}
	return buf.String(), nil
}

func installWrapper(drop []string) error {
	jq, err := exec.LookPath("jq")
	if err != nil {
		return fmt.Errorf("the runc wrapper needs jq: %w", err)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("the runc wrapper needs runc (docker's runtime): %w", err)
	}
	if runc == RuncWrapper {
		return fmt.Errorf("runc in PATH is our wrapper %s: fix PATH", RuncWrapper)
	}
	script, err := renderWrapper(drop, jq, runc)
	if err != nil {
		return err
	}
	return writeFileAtomic(RuncWrapper, []byte(script), 0o755)
}

// mergeDaemonJSON sets our runtime as docker's default, keeping every other key of the file.
func mergeDaemonJSON(path string) error {
	cfg := map[string]any{}
	data, err := os.ReadFile(path)
	switch {
	case err == nil && len(bytes.TrimSpace(data)) > 0:
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("parse %s: %w (fix or remove the file)", path, err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read %s: %w", path, err)
	}
	runtimes, _ := cfg["runtimes"].(map[string]any)
	if runtimes == nil {
		runtimes = map[string]any{}
	}
	runtimes[RuntimeName] = map[string]any{"path": RuncWrapper}
	cfg["runtimes"] = runtimes
	cfg["default-runtime"] = RuntimeName
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return writeFileAtomic(path, append(out, '\n'), 0o644)
}

// reloadDockerd sends SIGHUP to dockerd and waits until it reports our runtime as the default.
func reloadDockerd(ctx context.Context) error {
	raw, err := os.ReadFile(dockerdPIDFile)
	if err != nil {
		return fmt.Errorf("read dockerd pid from %s: %w", dockerdPIDFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("parse dockerd pid %q from %s: %w", raw, dockerdPIDFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload dockerd (SIGHUP pid %d): %w", pid, err)
	}
	for i := 0; i < 60; i++ {
		out, err := run(ctx, "docker", "info", "--format", "{{.DefaultRuntime}}")
		if err == nil && strings.TrimSpace(out) == RuntimeName {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for dockerd reload: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("dockerd did not pick up default-runtime %s from %s after SIGHUP: see %s", RuntimeName, DaemonJSON, DockerdLog)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".starlab-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}
