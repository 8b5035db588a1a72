package cli

import (
	"fmt"
	"log/slog"
	"os/exec"

	"github.com/spf13/cobra"
)

// newUICommand returns `starlab ui`.
func newUICommand(g *globalOptions) *cobra.Command {
	var (
		oo   observerOptions
		port int
		open bool
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the observer's live service map (port-forward kept open until Ctrl-C)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: use 0 (any free port) or 1-65535", port)
			}
			ctx := cmd.Context()
			base, closeFn, fw, err := oo.connect(ctx, g, port)
			if err != nil {
				return err
			}
			defer closeFn()
			url := base + "/"
			fmt.Fprintf(stdout(cmd), "Starlab UI: %s\n(press Ctrl-C to stop)\n", url)
			if open {
				opener := exec.CommandContext(ctx, "xdg-open", url)
				if err := opener.Start(); err != nil {
					slog.Warn("could not open a browser; open the URL yourself", "url", url, "err", err)
				} else {
					go func() { _ = opener.Wait() }()
				}
			}
			if fw == nil {
				<-ctx.Done()
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-fw.Done():
				if err := fw.Err(); err != nil {
					return err
				}
				return fmt.Errorf("port-forward to the observer pod %s ended", fw.Pod)
			}
		},
	}
	oo.register(cmd)
	cmd.Flags().IntVar(&port, "port", 12000, "local port (0: any free port)")
	cmd.Flags().BoolVar(&open, "open", false, "open the URL with xdg-open")
	return cmd
}
