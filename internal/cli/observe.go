package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
)

// observerOptions say how a command reaches the observer.
type observerOptions struct {
	namespace  string
	url        string
	kubeconfig string
}

func (o *observerOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.namespace, "observer-namespace", observer.DefaultNamespace, "namespace of the observer pod")
	cmd.Flags().StringVar(&o.url, "observer-url", "", "talk to this observer URL instead of port-forwarding to the lab's observer pod")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the lab (default: the lab's own, $HOME/.kube/starlab-<name>.yaml)")
}

// connect returns the observer's base URL and a closer: a client-go port-forward to the observer pod of
// the lab (its kubeconfig), or --observer-url as is.
func (o *observerOptions) connect(ctx context.Context, g *globalOptions, localPort int) (string, func(), *observer.Forward, error) {
	if o.url != "" {
		return strings.TrimSuffix(o.url, "/"), func() {}, nil, nil
	}
	cfg, err := o.restConfig(g)
	if err != nil {
		return "", nil, nil, err
	}
	fw, err := observer.PortForward(ctx, cfg, o.namespace, localPort)
	if err != nil {
		return "", nil, nil, fmt.Errorf("reach the observer of lab %q: %w", g.clusterName, err)
	}
	return fw.URL(), fw.Close, fw, nil
}

// The transports `starlab observe` reads flows over.
const (
	transportGRPC   = "grpc"   // Hubble's GetFlows (protobuf over gRPC), the observer's Hubble port
	transportHTTP   = "http"   // the observer's HTTP API, /api/v1/flows, in the binary wire form
	transportNDJSON = "ndjson" // the same API as NDJSON, as curl reads it
)

// defaultTransport is what `starlab observe` uses unless told otherwise (docs/BENCHMARKS.md,
// "Client side: a follow client over gRPC vs NDJSON vs the wire form").
const defaultTransport = transportHTTP

// transportOptions say which API `starlab observe` reads flows from.
type transportOptions struct {
	transport string
	grpc      bool
	server    string
}

func (t *transportOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.transport, "transport", "", "how to read flows: grpc (Hubble's API, the observer's port "+observer.HubblePortName+"), http (its HTTP API in Starlab's binary wire form) or ndjson (the HTTP API as NDJSON) (default "+defaultTransport+"; --server implies grpc, --observer-url http)")
	cmd.Flags().BoolVar(&t.grpc, "grpc", false, "read flows over Hubble's gRPC API: --transport grpc")
	cmd.Flags().StringVar(&t.server, "server", "", "Hubble API address (host:port) to read flows from instead of port-forwarding to the lab's observer, as hubble's --server (implies --transport grpc)")
}

// resolve is the transport the flags ask for, or an error naming the flags that disagree.
func (t *transportOptions) resolve(oo *observerOptions) (string, error) {
	tr := t.transport
	switch tr {
	case "", transportGRPC, transportHTTP, transportNDJSON:
	default:
		return "", fmt.Errorf("--transport %q: use grpc, http or ndjson", tr)
	}
	if t.grpc {
		if tr != "" && tr != transportGRPC {
			return "", fmt.Errorf("--grpc and --transport %s disagree: drop one", tr)
		}
		tr = transportGRPC
	}
	if t.server != "" {
		if tr != "" && tr != transportGRPC {
			return "", fmt.Errorf("--server is a Hubble gRPC address and cannot be read with --transport %s: use --observer-url for the HTTP API", tr)
		}
		tr = transportGRPC
	}
	if oo.url != "" {
		if tr == transportGRPC {
			return "", fmt.Errorf("--observer-url is the observer's HTTP API and cannot be read over gRPC: use --server host:port for its Hubble port, or --transport http")
		}
		if tr == "" {
			tr = transportHTTP
		}
	}
	if tr == "" {
		tr = defaultTransport
	}
	return tr, nil
}

// flowSource opens the flow stream the options name: the query function and a closer.
func flowSource(ctx context.Context, g *globalOptions, oo *observerOptions, to *transportOptions) (func(context.Context, flow.Query, func(*flow.Flow) error) error, func(), error) {
	tr, err := to.resolve(oo)
	if err != nil {
		return nil, nil, err
	}
	if tr == transportHTTP || tr == transportNDJSON {
		base, closeFn, _, err := oo.connect(ctx, g, 0)
		if err != nil {
			return nil, nil, err
		}
		return (&observer.Client{Base: base, NDJSON: tr == transportNDJSON}).Flows, closeFn, nil
	}
	addr, closeFw := to.server, func() {}
	if addr == "" {
		cfg, err := oo.restConfig(g)
		if err != nil {
			return nil, nil, err
		}
		fw, err := observer.PortForwardHubble(ctx, cfg, oo.namespace, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("reach the Hubble API of the observer of lab %q: %w", g.clusterName, err)
		}
		addr, closeFw = fmt.Sprintf("127.0.0.1:%d", fw.LocalPort()), fw.Close
	}
	conn, err := hubbleapi.Dial(addr)
	if err != nil {
		closeFw()
		return nil, nil, err
	}
	return (&hubbleapi.Client{Conn: conn}).Flows, func() { conn.Close(); closeFw() }, nil
}

// restConfig is the REST config of the lab (its kubeconfig, or --kubeconfig).
func (o *observerOptions) restConfig(g *globalOptions) (*rest.Config, error) {
	var opts []lab.Option
	if o.kubeconfig != "" {
		opts = append(opts, lab.WithKubeconfigPath(o.kubeconfig))
	}
	l, err := lab.Open(g.clusterName, opts...)
	if err != nil {
		return nil, err
	}
	return l.RESTConfig()
}

// newObserveCommand returns `starlab observe`.
func newObserveCommand(g *globalOptions) *cobra.Command {
	var (
		flags       flow.Flags
		oo          observerOptions
		to          transportOptions
		output      string
		inputFile   string
		connections bool
	)
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Show network flows from the lab's observer (or a saved NDJSON file), Hubble style",
		Long: `Show network flows observed by Starlab's datapath, merged across every node.

Filters: repeating a flag ORs its values, different flags are ANDed, --not turns the next filter
flag into an exclusion. Pods are [namespace/]name-prefix, services [namespace/]name, labels are
Kubernetes selectors (k=v, k!=v, 'k in (a,b)').

Flows come from the observer's HTTP API as NDJSON (--transport ndjson, the default: it measured
faster, docs/BENCHMARKS.md) or from its Hubble gRPC API (--transport grpc or --grpc; --server
host:port names a Hubble server instead of port-forwarding). Both print the same: over gRPC the
filters Hubble's API cannot express (--policy, --tier, ...) are matched here.`,
		Example: `  starlab observe --last 50
  starlab observe -f --to-namespace stars --verdict DROPPED
  starlab observe --grpc --last 20 --not --verdict FORWARDED
  starlab observe --from-label role=client --to-port 6379 -o json > flows.ndjson
  starlab observe --input-file flows.ndjson --not --verdict FORWARDED -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "compact", "table", "json"); err != nil {
				return err
			}
			q, err := flags.Query(time.Now())
			if err != nil {
				return err
			}
			p := newFlowPrinter(stdout(cmd), output, q.Follow)
			defer p.flush()
			if connections {
				cp := newConnPrinter(stdout(cmd), output, q.Follow)
				p = &flowPrinter{format: "connections", conn: cp}
				defer func() {
					if err := cp.done(); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
					}
				}()
			}
			if inputFile != "" {
				if q.Follow {
					return fmt.Errorf("--follow cannot be combined with --input-file: a saved file has no new flows")
				}
				if to.grpc || to.server != "" || to.transport != "" {
					return fmt.Errorf("--input-file reads a saved file, not the observer: drop --grpc, --server and --transport")
				}
				return replayFile(cmd.InOrStdin(), inputFile, q, p.print)
			}
			ctx := cmd.Context()
			flows, closeFn, err := flowSource(ctx, g, &oo, &to)
			if err != nil {
				return err
			}
			defer closeFn()
			err = flows(ctx, q, func(f *flow.Flow) error {
				if err := p.print(f); err != nil {
					return err
				}
				if q.Follow {
					p.flush()
				}
				return nil
			})
			if q.Follow && errors.Is(err, context.Canceled) {
				return nil // Ctrl-C ends a followed stream
			}
			return err
		},
	}
	flags.Register(cmd.Flags())
	oo.register(cmd)
	to.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "compact", "output format: compact, table or json (NDJSON, one flow per line)")
	cmd.Flags().StringVar(&inputFile, "input-file", "", "replay flows from a saved NDJSON file ('-' for stdin) or a bundle (*.tar.gz: the failing step's flows, else the observer's) instead of the lab")
	cmd.Flags().BoolVar(&connections, "connections", false, "fold replies, both hooks and the close into their connection: one row per connection, not per event")
	return cmd
}

// isBundle says whether path names a bundle (a gzipped tar) rather than NDJSON.
func isBundle(path string) bool {
	return strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz")
}

// replayFile applies q (filters, window, last) to the flows of an NDJSON file.
func replayFile(stdin io.Reader, path string, q flow.Query, emit func(*flow.Flow) error) error {
	m, err := q.Matcher()
	if err != nil {
		return err
	}
	r := stdin
	if isBundle(path) {
		b, err := bundle.Open(path)
		if err != nil {
			return fmt.Errorf("--input-file: %w", err)
		}
		flows, err := b.Flows()
		if err != nil {
			return fmt.Errorf("--input-file: %w", err)
		}
		var buf bytes.Buffer
		enc := flow.NewEncoder(&buf)
		for _, f := range flows {
			if err := enc.Encode(f); err != nil {
				return fmt.Errorf("--input-file %s: %w", path, err)
			}
		}
		r = &buf
	} else if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open --input-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	dec := flow.NewDecoder(r)
	var ring []*flow.Flow // the last q.Last matches
	next := 0
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("--input-file %s: %w", path, err)
		}
		if !m.Match(f) {
			continue
		}
		if q.Last <= 0 {
			if err := emit(f); err != nil {
				return err
			}
			continue
		}
		if len(ring) < q.Last {
			ring = append(ring, f)
		} else {
			ring[next] = f
			next = (next + 1) % q.Last
		}
	}
	for i := range ring {
		if err := emit(ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

// flowPrinter renders flows as compact lines, a table, or NDJSON.
type flowPrinter struct {
	format string
	w      io.Writer
	tw     *tabwriter.Writer
	enc    *flow.Encoder
	header bool
	conn   *connPrinter // --connections: flows go to the fold
}

// newFlowPrinter prints in format; a followed table uses fixed column widths (rows print as they come).
func newFlowPrinter(w io.Writer, format string, follow bool) *flowPrinter {
	p := &flowPrinter{format: format, w: w}
	switch format {
	case "json":
		p.enc = flow.NewEncoder(w)
	case "table":
		if follow {
			p.format = "table-fixed"
		} else {
			p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		}
	}
	return p
}

func (p *flowPrinter) flush() {
	if p.tw != nil {
		_ = p.tw.Flush()
	}
}

func (p *flowPrinter) print(f *flow.Flow) error {
	switch p.format {
	case "connections":
		return p.conn.add(f)
	case "json":
		return p.enc.Encode(f)
	case "table":
		if !p.header {
			p.header = true
			fmt.Fprintln(p.tw, "TIMESTAMP\tSOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY")
		}
		_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Time.Local().Format(time.StampMilli),
			endpointText(f.Source, f.L4.SourcePort), endpointText(f.Destination, f.L4.DestinationPort),
			strings.ToLower(f.TraceObservationPoint), verdictText(f), summary(f))
		return err
	case "table-fixed":
		if !p.header {
			p.header = true
			fmt.Fprintf(p.w, "%-19s  %-45s  %-45s  %-13s  %-25s  %s\n", "TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY")
		}
		_, err := fmt.Fprintf(p.w, "%-19s  %-45s  %-45s  %-13s  %-25s  %s\n", f.Time.Local().Format(time.StampMilli),
			endpointText(f.Source, f.L4.SourcePort), endpointText(f.Destination, f.L4.DestinationPort),
			strings.ToLower(f.TraceObservationPoint), verdictText(f), summary(f))
		return err
	default:
		_, err := fmt.Fprintln(p.w, CompactFlow(f))
		return err
	}
}

// CompactFlow renders one flow on one line, like `hubble observe`:
// "Jan  2 03:04:05.000: client/client-1:41000 (ID:256) -> stars/backend-3:6379 (ID:258) to-endpoint DROPPED POLICY_DENIED (TCP Flags: SYN) ingress denied by DefaultDeny".
func CompactFlow(f *flow.Flow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s) -> %s (%s)", f.Time.Local().Format(time.StampMilli),
		endpointText(f.Source, f.L4.SourcePort), identityText(f.Source.Identity),
		endpointText(f.Destination, f.L4.DestinationPort), identityText(f.Destination.Identity))
	if s := f.DestinationService; s != nil {
		fmt.Fprintf(&b, " service %s/%s", s.Namespace, s.Name)
		if f.IP.OrigDestination != "" {
			fmt.Fprintf(&b, " (%s:%d)", f.IP.OrigDestination, f.L4.OrigDestinationPort)
		}
	}
	if f.TraceObservationPoint != "" {
		b.WriteString(" " + strings.ReplaceAll(strings.ToLower(f.TraceObservationPoint), "_", "-"))
	}
	b.WriteString(" " + verdictText(f))
	fmt.Fprintf(&b, " (%s)", summary(f))
	return b.String()
}

func verdictText(f *flow.Flow) string {
	v := string(f.Verdict)
	if f.DropReasonDesc != "" {
		v += " " + f.DropReasonDesc
	}
	return v
}

func summary(f *flow.Flow) string {
	parts := []string{}
	proto := f.L4.Protocol
	if fl := f.L4.Flags.String(); fl != "" {
		proto += " Flags: " + fl
	}
	parts = append(parts, proto)
	if f.EventType != "" {
		parts = append(parts, string(f.EventType))
	}
	if f.IsReply {
		parts = append(parts, "reply")
	}
	if f.TrafficDirection != "" {
		parts = append(parts, strings.ToLower(string(f.TrafficDirection)))
	}
	if f.NodeName != "" {
		parts = append(parts, "node "+f.NodeName)
	}
	for _, p := range f.AllowedBy {
		parts = append(parts, "allowed by "+p.String())
	}
	for _, p := range f.DeniedBy {
		parts = append(parts, "denied by "+p.String())
	}
	if f.Packets > 0 {
		parts = append(parts, fmt.Sprintf("%d pkts %d bytes", f.Packets, f.Bytes))
	}
	return strings.Join(parts, ", ")
}

func endpointText(e flow.Endpoint, port uint16) string {
	s := e.String()
	if e.PodName == "" && e.IP == "" {
		if n := flow.ReservedIdentityName(e.Identity); n != "" {
			s = n
		}
	}
	if port != 0 {
		s += fmt.Sprintf(":%d", port)
	}
	return s
}

func identityText(id uint32) string {
	if n := flow.ReservedIdentityName(id); n != "" {
		return n
	}
	return fmt.Sprintf("ID:%d", id)
}
