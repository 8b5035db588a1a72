package demo

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// NewCommand returns the starlab-demo command tree (one subcommand per mode).
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "starlab-demo",
		Short:         "Starlab demo workloads: probe, management-ui, api, db",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newProbeCommand(), newUICommand(), newAPICommand(), newDBCommand(), newLoadCommand())
	return root
}

func logger() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }

func newProbeCommand() *cobra.Command {
	var cfg ProbeConfig
	var peers []string
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Serve /status and /probe on --port, accept on --listen ports, probe every --peer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range peers {
				p, err := ParsePeer(s)
				if err != nil {
					return err
				}
				cfg.Peers = append(cfg.Peers, p)
			}
			p, err := NewProber(cfg, logger())
			if err != nil {
				return err
			}
			return p.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Port, "port", 8080, "HTTP port (/status, /probe, /healthz); peers connect here")
	f.IntSliceVar(&cfg.Listen, "listen", nil, "extra TCP ports that accept connections")
	f.IntSliceVar(&cfg.ListenUDP, "listen-udp", nil, "UDP ports that echo every datagram")
	f.IntSliceVar(&cfg.ListenSCTP, "listen-sctp", nil, "SCTP ports that accept associations (the node's kernel needs SCTP)")
	f.IntSliceVar(&cfg.Echo, "echo", nil, "TCP ports that echo every byte back and keep connections open (peers of POST /streams)")
	f.StringArrayVar(&peers, "peer", nil, "peer to probe: host:port (TCP connect) or http(s) URL (GET); repeatable")
	f.DurationVar(&cfg.Interval, "interval", 2*time.Second, "time between probe rounds")
	f.DurationVar(&cfg.Timeout, "timeout", time.Second, "timeout of one probe")
	f.StringVar(&cfg.Addr, "addr", "", "IP address to bind (default all)")
	return cmd
}

func newUICommand() *cobra.Command {
	var cfg UIConfig
	var nodes []string
	cmd := &cobra.Command{
		Use:   "management-ui",
		Short: "Fetch every probe's /status and draw the star graph (/, /api/graph)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range nodes {
				n, err := ParseUINode(s)
				if err != nil {
					return err
				}
				cfg.Nodes = append(cfg.Nodes, n)
			}
			ui, err := NewUI(cfg, logger())
			if err != nil {
				return err
			}
			return ui.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Port, "port", 9001, "HTTP port")
	f.StringArrayVar(&nodes, "node", nil, "graph node ID=host:port whose /status to read (e.g. F=frontend.stars:80); repeatable")
	f.DurationVar(&cfg.Interval, "interval", 2*time.Second, "time between refreshes")
	f.DurationVar(&cfg.Timeout, "timeout", time.Second, "timeout of one status fetch")
	f.StringVar(&cfg.Addr, "addr", "", "IP address to bind (default all)")
	return cmd
}

func newAPICommand() *cobra.Command {
	var cfg APIConfig
	var port int
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the orders or inventory REST API backed by the db",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := NewAPIHandler(cfg, logger())
			if err != nil {
				return err
			}
			logger().Info("api serving", "name", cfg.Name, "port", port, "db", cfg.DB)
			return Serve(cmd.Context(), net.JoinHostPort("", strconv.Itoa(port)), h)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "which API: orders or inventory")
	f.StringVar(&cfg.DB, "db", "db:7000", "db host:port")
	f.StringVar(&cfg.Inventory, "inventory", "", "inventory base URL (orders only), e.g. http://inventory:8080")
	f.IntVar(&port, "port", 8080, "HTTP port")
	return cmd
}

func newDBCommand() *cobra.Command {
	var port, httpPort int
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Serve the tiny key-value db (line protocol) on --port and /probe on --http-port",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("db listen on port %d: %w", port, err)
			}
			errc := make(chan error, 1)
			go func() { errc <- ServeDB(cmd.Context(), l, NewDB(), log) }()
			if httpPort > 0 {
				go func() {
					mux := newCommonMux()
					if err := Serve(cmd.Context(), net.JoinHostPort("", strconv.Itoa(httpPort)), mux); err != nil {
						errc <- err
					}
				}()
			}
			log.Info("db serving", "port", port, "httpPort", httpPort)
			return <-errc
		},
	}
	cmd.Flags().IntVar(&port, "port", 7000, "db protocol port")
	cmd.Flags().IntVar(&httpPort, "http-port", 8080, "HTTP port for /probe and /healthz (0 = off)")
	return cmd
}

func newLoadCommand() *cobra.Command {
	var cfg LoadConfig
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Flow load: a UDP sink on --sink-port.. and, on POST /flowload, a generator of new UDP flows to a peer's sink",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := NewLoader(cfg, logger())
			if err != nil {
				return err
			}
			return l.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Port, "port", 8080, "HTTP control port (/healthz, POST /flowload, GET /flowload/stats)")
	f.IntVar(&cfg.SinkFirst, "sink-port", 9000, "first UDP port of the sink")
	f.IntVar(&cfg.SinkCount, "sink-ports", 64, "number of consecutive UDP sink ports")
	f.StringVar(&cfg.Addr, "addr", "", "IP address to bind (default all)")
	return cmd
}
