package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/lab"
)

// newStatusCommand returns `starlab status`.
func newStatusCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes (roles, Ready, IPs, pod CIDRs, versions) and kube-system pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			l, err := lab.Open(g.clusterName)
			if err != nil {
				return err
			}
			st, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			out := stdout(cmd)
			if output == "json" {
				return writeJSON(out, st)
			}
			fmt.Fprintf(out, "lab:        %s (%s)\n", st.Name, st.State)
			if st.State == lab.StateAbsent {
				fmt.Fprintf(out, "run `starlab up --name %s` to create it\n", st.Name)
				return nil
			}
			fmt.Fprintf(out, "kubernetes: %s\nnode image: %s\napi server: %s\nkubeconfig: %s\n", st.ServerVersion, st.NodeImage, st.APIServer, st.Kubeconfig)
			if st.Error != "" {
				fmt.Fprintf(out, "error:      %s\n", st.Error)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\nNODE\tROLE\tCONTAINER\tREADY\tINTERNAL-IP\tPOD-CIDR\tKUBELET\tRUNTIME")
			for _, n := range st.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Container, n.Ready, n.InternalIP, n.PodCIDR, n.KubeletVersion, n.Runtime)
			}
			fmt.Fprintln(tw, "\nKUBE-SYSTEM POD\tNODE\tPHASE\tREADY\tRESTARTS\tIP")
			for _, p := range st.Pods {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%d\t%s\n", p.Name, p.Node, p.Phase, p.Ready, p.Restarts, p.IP)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
