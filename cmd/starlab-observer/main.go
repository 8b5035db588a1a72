// Command starlab-observer is the cluster observer (Deployment): it merges every node agent's flow
// stream and serves the flow API, the service graph, status, metrics and the UI on :4245.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
	"github.com/starlab-dev/starlab/internal/kubeclient"
	"github.com/starlab-dev/starlab/internal/observer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("starlab-observer", flag.ContinueOnError)
	listen := fs.String("listen", fmt.Sprintf(":%d", observer.Port), "address to serve the APIs and UI on")
	hubbleListen := fs.String("hubble-listen", fmt.Sprintf(":%d", hubbleapi.Port), "address to serve Hubble's gRPC API (observer.Observer) on; empty: none")
	namespace := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "namespace of the agent pods (default $POD_NAMESPACE)")
	selector := fs.String("agent-selector", agentapi.PodSelector, "label selector of the agent pods")
	agentPort := fs.Int("agent-port", agentapi.Port, "port the agents serve flows on")
	capacity := fs.Int("buffer", 100000, "flows kept in memory")
	window := fs.Duration("merge-window", 200*time.Millisecond, "reorder window of the live merge")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (default: in-cluster)")
	debug := fs.Bool("debug", false, "debug logging")
	tlsCert := fs.String("agent-tls-cert", "", "client certificate (PEM) presented to the agents; with --agent-tls-key and --agent-tls-ca the agents are dialled with mutual TLS")
	tlsKey := fs.String("agent-tls-key", "", "client key (PEM)")
	tlsCA := fs.String("agent-tls-ca", "", "CA of the agents' server certificates (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if *namespace == "" {
		return fmt.Errorf("agent namespace unknown: set --namespace or POD_NAMESPACE (the chart sets it from the downward API)")
	}
	cfg, err := kubeclient.RESTConfig(*kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ocfg := observer.Config{Capacity: *capacity, MergeWindow: *window, Log: log}
	useTLS, err := agentapi.TLSFilesSet(*tlsCert, *tlsKey, *tlsCA)
	if err != nil {
		return fmt.Errorf("agent TLS: set --agent-tls-cert, --agent-tls-key and --agent-tls-ca together (or none)")
	}
	if useTLS {
		if ocfg.AgentTLS, err = agentapi.ClientTLSConfig(*tlsCert, *tlsKey, *tlsCA); err != nil {
			return err
		}
	}
	obs, err := observer.New(ocfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	obs.Start(ctx)
	defer obs.Wait()
	errc := make(chan error, 3)
	go func() { errc <- obs.Serve(ctx, *listen) }()
	if *hubbleListen != "" {
		go func() { errc <- obs.HubbleServer(hubbleapi.BinaryVersion()).Serve(ctx, *hubbleListen) }()
	}
	go func() {
		d := &observer.Discovery{Client: cs, Namespace: *namespace, Selector: *selector, AgentPort: *agentPort, Observer: obs}
		errc <- d.Run(ctx)
	}()
	log.Info("observer serving", "listen", *listen, "hubble", *hubbleListen, "namespace", *namespace, "selector", *selector)
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		cancel(err)
		if err != nil {
			return err
		}
		return fmt.Errorf("observer stopped unexpectedly")
	case <-ctx.Done():
		return nil
	}
}
