package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/progress"
)

// newBundleCommand returns `starlab bundle`.
func newBundleCommand(g *globalOptions) *cobra.Command {
	var (
		file      string
		since     time.Duration
		format    string
		namespace string
		redact    bool
		redactKey []string
	)
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write a bug-report bundle (status, objects, logs, flows, node state) of the lab as one tar.gz",
		Long: `Collect everything needed to debug the lab into one tar.gz: the lab status, YAML dumps of nodes, pods,
services, EndpointSlices, NetworkPolicies, namespaces, events and the starlab DaemonSet/Deployment, logs of
the agent and observer pods (and of previous containers after restarts), each agent's /v1/status, metrics
and recent flows (NDJSON), the observer's status, graph, metrics and merged flows, per-node routes, addresses, iptables,
bpffs pins and containerd/kubelet journals, and the starlab and Kubernetes versions.

MANIFEST.json lists every file with its size and every collection step that failed with its error: a
failing step never stops the bundle. --redact learns every Secret's values from the lab first and
replaces them (raw and base64) in every file; --redact-key K also replaces the values of keys named K.`,
		Example: `  starlab bundle
  starlab bundle --output /tmp/lab.tar.gz --since 30m
  starlab bundle --redact --redact-key API_TOKEN
  starlab bundle -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.HasSuffix(format, ".tar.gz") || strings.HasSuffix(format, ".tgz") {
				return fmt.Errorf("-o %q is the output format (text or json): write the file name with --output %s", format, format)
			}
			if err := outputFormat(format, "text", "json"); err != nil {
				return err
			}
			if since <= 0 {
				return fmt.Errorf("--since %s: use a positive window such as 15m", since)
			}
			res, err := bundle.Write(cmd.Context(), bundle.Options{
				Lab: g.clusterName, Output: file, Since: since, Namespace: namespace,
				Progress: progress.New(progressOut(cmd, format)),
				Redact:   redact, RedactKeys: redactKey,
			})
			if err != nil && res.Path == "" {
				return err
			}
			out := stdout(cmd)
			if format == "json" {
				if encErr := writeJSON(out, res); encErr != nil {
					return encErr
				}
				return err
			}
			fmt.Fprintf(out, "bundle: %s (%s, %d files, %s)\n", res.Path, humanSize(res.Size), res.Files, res.DurationText)
			if n := len(res.Failures); n > 0 {
				fmt.Fprintf(out, "%d collection failure(s), listed in %s:\n", n, bundle.ManifestName)
				for _, f := range res.Failures {
					item := f.Step
					if f.Item != "" {
						item += ": " + f.Item
					}
					fmt.Fprintf(out, "  %s: %s\n", item, f.Error)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "output", "", "bundle file to write (*.tar.gz; default ./starlab-bundle-<lab>-<UTC time>.tar.gz)")
	cmd.Flags().StringVarP(&format, "format", "o", "text", "what to print when done: text or json (the file name is --output)")
	cmd.Flags().DurationVar(&since, "since", bundle.DefaultSince, "window of flows and node journals to include")
	cmd.Flags().BoolVar(&redact, "redact", false, "replace every Secret's data (and its base64 form) wherever it appears, before anything is written")
	cmd.Flags().StringSliceVar(&redactKey, "redact-key", nil, "also replace the value of every key (map key or env var name) of this name; implies --redact")
	cmd.Flags().StringVar(&namespace, "starlab-namespace", bundle.DefaultNamespace, "namespace of the starlab agent and observer")
	return cmd
}

// humanSize prints a byte count as B, KiB or MiB.
func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
