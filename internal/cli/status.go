package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
)

// statusView is what `starlab status` prints: the lab, plus the observer's view of the agents.
type statusView struct {
	*lab.Status
	Observer      *observer.Status `json:"observer,omitempty"`
	ObserverError string           `json:"observerError,omitempty"`
}

// observerStatus asks the lab's observer (through a port-forward) which agents it hears, the flow rate
// and the lost events.
func observerStatus(ctx context.Context, l *lab.Lab) (*observer.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	fw, err := observer.PortForward(ctx, cfg, observer.DefaultNamespace, 0)
	if err != nil {
		return nil, err
	}
	defer fw.Close()
	st, err := (&observer.Client{Base: fw.URL()}).Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("observer status: %w", err)
	}
	return &st, nil
}

// printObserver writes the agents/observer part of `starlab status`.
func printObserver(out io.Writer, v statusView) error {
	if v.Observer == nil {
		_, err := fmt.Fprintf(out, "\nobserver:   unavailable (%s)\n", v.ObserverError)
		return err
	}
	o := v.Observer
	fmt.Fprintf(out, "\nobserver:   %d/%d nodes connected, %.1f flows/s, %d flows, %d lost events, %d late flows\n",
		o.Connected, o.Connected+o.Unavailable, o.FlowsPerSecond, o.FlowsTotal, o.LostEvents, o.LateFlows)
	if o.LostEvents > 0 {
		fmt.Fprintf(out, "lost by stage: ring buffer %d, agent queue %d, agent subscribers %d, observer subscribers %d\n",
			o.LostByStage[observer.StageRingbuf], o.LostByStage[observer.StageAgentQueue],
			o.LostByStage[observer.StageAgentSubscriber], o.LostByStage[observer.StageObserverSubscriber])
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT NODE\tADDRESS\tSTATE\tFLOWS\tLOST (RINGBUF/QUEUE/SUBSCRIBER)\tRECONNECTS\tERROR")
	for _, n := range o.Nodes {
		s := n.AgentStages
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d (%d/%d/%d)\t%d\t%s\n", n.Name, n.Address, n.State, n.Flows, n.LostEvents,
			s.RingbufLost, s.QueueLost, s.SubscriberLost, n.Reconnects, n.Error)
	}
	return tw.Flush()
}

// newStatusCommand returns `starlab status`.
func newStatusCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes (roles, Ready, IPs, pod CIDRs, versions), kube-system pods, agents and observer",
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
			view := statusView{Status: st}
			if st.State != lab.StateAbsent {
				if view.Observer, err = observerStatus(cmd.Context(), l); err != nil {
					view.ObserverError = err.Error()
				}
			}
			out := stdout(cmd)
			if output == "json" {
				return writeJSON(out, view)
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
			if err := tw.Flush(); err != nil {
				return err
			}
			return printObserver(out, view)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
