// Command starlab-cni is Starlab's CNI plugin; containerd runs it from /opt/cni/bin.
package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/starlab-dev/starlab/internal/cni"
)

func main() {
	// stdout carries the CNI result; logs go to stderr (containerd records them on failure).
	p := &cni.Plugin{Timeout: 60 * time.Second, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	skel.PluginMainFuncs(p.Funcs(), version.All, "starlab-cni: Starlab eBPF routed pod networking")
}
