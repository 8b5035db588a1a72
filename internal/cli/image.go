package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/hostprep"
	"github.com/starlab-dev/starlab/internal/nodeimage"
	"github.com/starlab-dev/starlab/internal/progress"
)

// newImageCommand returns `starlab image` and its `build` subcommand.
func newImageCommand(_ *globalOptions) *cobra.Command {
	image := &cobra.Command{
		Use:   "image",
		Short: "Manage the offline kind node image",
	}
	var version, output, cacheDir string
	var skipHostPrep bool
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the kind node image offline (cached; a warm run takes seconds)",
		Long: "Builds localhost/starlab/kind-node:<version>-<key> from Go modules, a debootstrap rootfs and kind's\n" +
			"base files, with the control-plane images preloaded. Nothing is pulled from any registry.\n" +
			"Supported Kubernetes versions: " + strings.Join(nodeimage.SupportedVersions(), ", ") + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			if err := nodeimage.ValidateVersion(version); err != nil {
				return err
			}
			ctx := cmd.Context()
			p := progress.New(progressOut(cmd, output))
			if !skipHostPrep {
				if err := p.Run("prepare host (docker, debootstrap)", func() error { return hostprep.Ensure(ctx, slog.Default()) }); err != nil {
					return err
				}
			}
			res, err := nodeimage.Build(ctx, nodeimage.Options{
				KubernetesVersion: version,
				CacheDir:          cacheDir,
				Progress:          p,
				Logger:            slog.Default(),
			})
			if err != nil {
				return err
			}
			out := stdout(cmd)
			if output == "json" {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "image:   %s (%s in %s)\n", res.Image, res.Source, res.Duration.Round(time.Millisecond))
			fmt.Fprintf(out, "tags:    etcd %s, coredns %s, pause %s\n", res.EtcdTag, res.CoreDNSTag, res.PauseTag)
			return nil
		},
	}
	build.Flags().StringVar(&version, "kubernetes-version", nodeimage.DefaultVersion,
		"Kubernetes version ("+strings.Join(nodeimage.SupportedVersions(), ", ")+")")
	build.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	build.Flags().StringVar(&cacheDir, "cache-dir", os.Getenv("STARLAB_CACHE"), "build cache directory (default $STARLAB_CACHE or /var/cache/starlab)")
	build.Flags().BoolVar(&skipHostPrep, "skip-host-prep", false, "do not check/prepare docker and debootstrap first")
	image.AddCommand(build, newKubeProxyImageCommand())
	return image
}

// newKubeProxyImageCommand returns `starlab image kube-proxy`: the benchmark reference lab's kube-proxy.
func newKubeProxyImageCommand() *cobra.Command {
	var version, output, cacheDir string
	cmd := &cobra.Command{
		Use:   "kube-proxy",
		Short: "Build kube-proxy offline from the node image's Kubernetes module (cached; for `starlab bench`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			p := progress.New(progressOut(cmd, output))
			res, err := nodeimage.BuildKubeProxy(cmd.Context(), nodeimage.Options{KubernetesVersion: version, CacheDir: cacheDir, Progress: p, Logger: slog.Default()})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(stdout(cmd), res)
			}
			fmt.Fprintf(stdout(cmd), "kube-proxy %s: %s\n", res.KubernetesVersion, res.Binary)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "kubernetes-version", nodeimage.DefaultVersion, "Kubernetes version ("+strings.Join(nodeimage.SupportedVersions(), ", ")+")")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&cacheDir, "cache-dir", os.Getenv("STARLAB_CACHE"), "build cache directory (default $STARLAB_CACHE or /var/cache/starlab)")
	return cmd
}
