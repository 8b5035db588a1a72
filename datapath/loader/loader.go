// Package loader loads the datapath eBPF objects (datapath/bpfobj), pins
// their maps under a bpffs directory (default /sys/fs/bpf/starlab) so an
// agent restart keeps conntrack, endpoints and policy, and attaches the
// programs with TCX (fallback: clsact + cls_bpf direct-action) using pinned
// links, so programs stay attached while the agent restarts.
//
// Usage (the agent):
//
//	dp, err := loader.Load(ctx, loader.Options{})           // pins in /sys/fs/bpf/starlab
//	defer dp.Close()                                         // keeps pins and attachments
//	err = dp.Maps.SetConfig(maps.Config{NodeIPs: ips, NetdevIfindex: eth0Index})
//	err = dp.AttachNetdev(eth0Index)                         // NodePort
//	err = dp.Maps.UpsertEndpoint(uint32(hostVethIndex), maps.Endpoint{IP: podIP, Identity: id})
//	err = dp.AttachEndpoint(hostVethIndex)                   // after the endpoint entry
//	r, err := flowevent.NewReader(dp.Maps.Events, flowevent.ReaderOptions{Counters: dp.Maps.Counters})
//	go r.Run(ctx, func(e *flowevent.Event) { ... })
//	...
//	err = dp.DetachEndpoint(hostVethIndex); err = dp.Maps.DeleteEndpoint(uint32(hostVethIndex))
//
// After an agent restart, Load re-uses the pinned maps (conntrack, endpoints,
// policy survive) and the old programs stay attached through their pinned
// links; call UpdatePinnedLinks once to switch every attachment to the newly
// loaded programs (it also drops pins of interfaces that disappeared).
//
// Interface indexes are resolved in the network namespace of the calling
// thread (the agent runs in the node's host network namespace).
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/starlab-dev/starlab/datapath/maps"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where the agent pins maps and links.
const DefaultPinDir = "/sys/fs/bpf/starlab"

// AttachMode selects how programs are attached.
type AttachMode int

// Attach modes.
const (
	// AttachAuto uses TCX and falls back to clsact when the kernel lacks it.
	AttachAuto AttachMode = iota
	AttachTCX
	AttachLegacyTC
)

// Options configure Load.
type Options struct {
	// PinDir is the bpffs directory for maps and links (DefaultPinDir if
	// empty). Links go to PinDir/links.
	PinDir string
	// Mode selects TCX or legacy tc (default: auto).
	Mode AttachMode
	// Logger (slog.Default if nil).
	Logger *slog.Logger
}

// Datapath is the loaded datapath.
type Datapath struct {
	// Maps gives typed access to every map.
	Maps *maps.Maps

	pinDir string
	log    *slog.Logger
	mode   AttachMode
	lxc    *bpfobj.SlObjects
	netdev *bpfobj.SlNetdevObjects
}

// Load loads (or re-uses the pinned maps of) the datapath. It mounts bpffs at
// /sys/fs/bpf when missing. Programs are loaded but not attached.
func Load(ctx context.Context, opts Options) (*Datapath, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	pinDir := opts.PinDir
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := EnsureBPFFS(pinDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(pinDir, "links"), 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory %s: %w", pinDir, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock rlimit: %w", err)
	}

	lxcSpec, err := bpfobj.LoadSl()
	if err != nil {
		return nil, fmt.Errorf("load lxc object spec: %w", err)
	}
	pinMaps(lxcSpec)
	if err := dropIncompatiblePins(lxcSpec, pinDir, log); err != nil {
		return nil, err
	}
	var lxc bpfobj.SlObjects
	if err := lxcSpec.LoadAndAssign(&lxc, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}); err != nil {
		return nil, fmt.Errorf("load lxc programs (bpf/lxc.c): %w", verifierDetail(err))
	}

	// The netdev object defines the same maps (bpf/lib/sl_maps.h): it opens
	// the pins the lxc object just created or re-used.
	netdevSpec, err := bpfobj.LoadSlNetdev()
	if err != nil {
		lxc.Close()
		return nil, fmt.Errorf("load netdev object spec: %w", err)
	}
	pinMaps(netdevSpec)
	var netdev bpfobj.SlNetdevObjects
	if err := netdevSpec.LoadAndAssign(&netdev, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}); err != nil {
		lxc.Close()
		return nil, fmt.Errorf("load netdev program (bpf/netdev.c): %w", verifierDetail(err))
	}

	log.Info("datapath loaded", "pinDir", pinDir)
	return &Datapath{Maps: maps.New(&lxc.SlMaps), pinDir: pinDir, log: log, mode: opts.Mode, lxc: &lxc, netdev: &netdev}, nil
}

// pinMaps pins every map of bpf/lib/sl_maps.h by name. The global-data maps
// the compiler adds (".bss": the BTF anchor of lxc.c) are not state and are
// never pinned.
func pinMaps(spec *ebpf.CollectionSpec) {
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			m.Pinning = ebpf.PinByName
		}
	}
}

// dropIncompatiblePins removes pinned maps whose layout no longer matches the
// objects (an upgrade changed a map); they are recreated empty.
func dropIncompatiblePins(spec *ebpf.CollectionSpec, pinDir string, log *slog.Logger) error {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(pinDir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		cerr := ms.Compatible(m)
		m.Close()
		if cerr != nil {
			log.Warn("pinned map incompatible with the datapath objects, recreating it", "map", path, "reason", cerr)
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove incompatible pinned map %s: %w", path, err)
			}
		}
	}
	return nil
}

func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\nverifier log (tail):\n%+v", err, ve)
	}
	return err
}

// PinDir is the directory holding the pinned maps and links.
func (d *Datapath) PinDir() string { return d.pinDir }

// FromContainer is the program for TCX ingress of host veths.
func (d *Datapath) FromContainer() *ebpf.Program { return d.lxc.SlFromContainer }

// ToContainer is the program for TCX egress of host veths.
func (d *Datapath) ToContainer() *ebpf.Program { return d.lxc.SlToContainer }

// FromNetdev is the program for TCX ingress of the node device.
func (d *Datapath) FromNetdev() *ebpf.Program { return d.netdev.SlFromNetdev }

// ToNetdev is the node device's TCX egress program (replies of NodePort flows to host backends).
func (d *Datapath) ToNetdev() *ebpf.Program { return d.netdev.SlToNetdev }

// Close releases file descriptors. Pinned maps and links stay, so programs
// remain attached and state survives until the next Load.
func (d *Datapath) Close() error {
	if err := errors.Join(d.lxc.Close(), d.netdev.Close()); err != nil {
		return fmt.Errorf("close datapath objects: %w", err)
	}
	return nil
}

// Unpin removes every pin (maps and links) under the pin directory: programs
// are detached once no other reference remains. For tests and uninstall.
func (d *Datapath) Unpin() error {
	if err := os.RemoveAll(d.pinDir); err != nil {
		return fmt.Errorf("remove pin directory %s: %w", d.pinDir, err)
	}
	return nil
}

// EnsureBPFFS makes sure dir is on a bpffs, mounting bpffs at /sys/fs/bpf
// when dir is below it and nothing is mounted there.
func EnsureBPFFS(dir string) error {
	if onBPFFS(dir) {
		return nil
	}
	const root = "/sys/fs/bpf"
	if dir != root && !isUnder(dir, root) {
		return fmt.Errorf("pin directory %s is not on a bpffs: use a directory under %s or mount one (mount -t bpf bpf DIR)", dir, root)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", root, err)
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s (needs root / CAP_SYS_ADMIN): %w", root, err)
	}
	if !onBPFFS(dir) {
		return fmt.Errorf("pin directory %s: still not on bpffs after mounting %s", dir, root)
	}
	return nil
}

func isUnder(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}

// onBPFFS reports whether the nearest existing ancestor of dir is on bpffs.
func onBPFFS(dir string) bool {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil {
			return st.Type == unix.BPF_FS_MAGIC
		}
		if p == "/" {
			return false
		}
	}
}
