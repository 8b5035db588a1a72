package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type hook struct {
	name   string
	prog   func(*Datapath) *ebpf.Program
	attach ebpf.AttachType
	parent uint32 // clsact parent for the legacy fallback
}

var (
	hookFromContainer = hook{"from-container", (*Datapath).FromContainer, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS}
	hookToContainer   = hook{"to-container", (*Datapath).ToContainer, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS}
	hookFromNetdev    = hook{"from-netdev", (*Datapath).FromNetdev, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS}
	hookToNetdev      = hook{"to-netdev", (*Datapath).ToNetdev, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS}
)

// AttachEndpoint attaches sl_from_container (TCX ingress) and
// sl_to_container (TCX egress) to a pod's host veth. Write the endpoint into
// the maps first: packets of unknown endpoints are dropped. Idempotent; an
// existing pinned attachment is updated to the current programs.
func (d *Datapath) AttachEndpoint(ifindex int) error {
	if err := d.attach(ifindex, hookFromContainer); err != nil {
		return err
	}
	return d.attach(ifindex, hookToContainer)
}

// DetachEndpoint removes both programs from a host veth (gone interfaces
// are fine).
func (d *Datapath) DetachEndpoint(ifindex int) error {
	return errors.Join(d.detach(ifindex, hookFromContainer), d.detach(ifindex, hookToContainer))
}

// AttachNetdev attaches sl_from_netdev to TCX ingress and sl_to_netdev to TCX
// egress of the node device. Idempotent, as AttachEndpoint.
func (d *Datapath) AttachNetdev(ifindex int) error {
	if err := d.attach(ifindex, hookFromNetdev); err != nil {
		return err
	}
	return d.attach(ifindex, hookToNetdev)
}

// DetachNetdev removes sl_from_netdev and sl_to_netdev from the node device.
func (d *Datapath) DetachNetdev(ifindex int) error {
	return errors.Join(d.detach(ifindex, hookFromNetdev), d.detach(ifindex, hookToNetdev))
}

func (d *Datapath) linkPin(ifindex int, h hook) string {
	return filepath.Join(d.pinDir, "links", fmt.Sprintf("%d-%s", ifindex, h.name))
}

func (d *Datapath) attach(ifindex int, h hook) error {
	if ifindex <= 0 {
		return fmt.Errorf("attach %s: invalid ifindex %d", h.name, ifindex)
	}
	prog := h.prog(d)
	if d.mode != AttachLegacyTC {
		err := d.attachTCX(ifindex, h, prog)
		if err == nil || d.mode == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		d.log.Warn("TCX not supported by this kernel, falling back to clsact/cls_bpf", "ifindex", ifindex)
		d.mode = AttachLegacyTC
	}
	return d.attachLegacy(ifindex, h, prog)
}

func (d *Datapath) attachTCX(ifindex int, h hook, prog *ebpf.Program) error {
	pin := d.linkPin(ifindex, h)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		if sameTCXTarget(l, ifindex, h.attach) {
			uerr := l.Update(prog)
			l.Close()
			if uerr == nil {
				return nil
			}
			d.log.Warn("update pinned link failed, re-attaching", "pin", pin, "err", uerr)
		} else {
			l.Close()
		}
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale link pin %s: %w", pin, err)
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: h.attach})
	if err != nil {
		return fmt.Errorf("attach %s to ifindex %d (TCX): %w", h.name, ifindex, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin %s link of ifindex %d at %s: %w", h.name, ifindex, pin, err)
	}
	return nil
}

func sameTCXTarget(l link.Link, ifindex int, at ebpf.AttachType) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	tcx := info.TCX()
	return tcx != nil && int(tcx.Ifindex) == ifindex && ebpf.AttachType(tcx.AttachType) == at
}

func (d *Datapath) detach(ifindex int, h hook) error {
	pin := d.linkPin(ifindex, h)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		derr := l.Unpin()
		if sameTCXTarget(l, ifindex, h.attach) {
			if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
				derr = errors.Join(derr, err)
			}
		}
		l.Close()
		if derr != nil {
			return fmt.Errorf("detach %s from ifindex %d: %w", h.name, ifindex, derr)
		}
		return nil
	}
	// no pinned link: a clsact/cls_bpf attachment (fallback mode), if any
	return d.detachLegacy(ifindex, h)
}

const legacyPriority = 1

func (d *Datapath) attachLegacy(ifindex int, h hook, prog *ebpf.Program) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("add clsact qdisc to ifindex %d: %w", ifindex, err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: h.parent, Handle: 1,
			Protocol: unix.ETH_P_ALL, Priority: legacyPriority},
		Fd: prog.FD(), Name: "sl_" + h.name, DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("attach %s to ifindex %d (cls_bpf): %w", h.name, ifindex, err)
	}
	return nil
}

func (d *Datapath) detachLegacy(ifindex int, h hook) error {
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: h.parent, Handle: 1,
		Protocol: unix.ETH_P_ALL, Priority: legacyPriority}}
	err := netlink.FilterDel(f)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach %s from ifindex %d (cls_bpf): %w", h.name, ifindex, err)
	}
	return nil
}

// Attachment is one pinned program attachment.
type Attachment struct {
	Ifindex int
	Hook    string // "from-container", "to-container" or "from-netdev"
}

func hookByName(name string) (hook, bool) {
	for _, h := range []hook{hookFromContainer, hookToContainer, hookFromNetdev, hookToNetdev} {
		if h.name == name {
			return h, true
		}
	}
	return hook{}, false
}

// UpdatePinnedLinks points every pinned attachment at the programs of this
// Load (call it once after an agent restart or upgrade: traffic keeps flowing
// through the old programs until then, with no gap). Pins whose interface is
// gone are removed. Returns the live attachments.
func (d *Datapath) UpdatePinnedLinks() ([]Attachment, error) {
	dir := filepath.Join(d.pinDir, "links")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pinned links in %s: %w", dir, err)
	}
	var live []Attachment
	var errs []error
	for _, e := range entries {
		var ifindex int
		var name string
		idx := strings.IndexByte(e.Name(), '-')
		if idx <= 0 {
			continue
		}
		if _, err := fmt.Sscanf(e.Name()[:idx], "%d", &ifindex); err != nil {
			continue
		}
		name = e.Name()[idx+1:]
		h, ok := hookByName(name)
		if !ok {
			continue
		}
		pin := filepath.Join(dir, e.Name())
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", pin, err))
			continue
		}
		if !sameTCXTarget(l, ifindex, h.attach) {
			d.log.Info("removing pinned link of a gone interface", "pin", pin)
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", pin, err))
			}
			l.Close()
			continue
		}
		if err := l.Update(h.prog(d)); err != nil {
			errs = append(errs, fmt.Errorf("update pinned link %s: %w", pin, err))
		} else {
			live = append(live, Attachment{Ifindex: ifindex, Hook: name})
		}
		l.Close()
	}
	return live, errors.Join(errs...)
}
