package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
)

// connPrinter is `starlab observe --connections`: flows folded into their connection (replies, both
// hooks and the close together), one row per connection. A followed stream prints a connection when
// it opens and again when it closes; otherwise every connection once, at the end.
type connPrinter struct {
	format string
	w      io.Writer
	follow bool
	fold   *flow.Connections
	header bool
}

func newConnPrinter(w io.Writer, format string, follow bool) *connPrinter {
	return &connPrinter{format: format, w: w, follow: follow, fold: flow.NewConnections()}
}

// add folds one flow (and prints, when following).
func (p *connPrinter) add(f *flow.Flow) error {
	c, opened := p.fold.Add(f)
	if !p.follow {
		return nil
	}
	closing := f.EventType == flow.EventClose
	if closing {
		p.fold.Forget(f)
	}
	if opened || closing {
		return p.print(c, true)
	}
	return nil
}

// done prints every folded connection (not following).
func (p *connPrinter) done() error {
	if p.follow {
		return nil
	}
	var tw *tabwriter.Writer
	if p.format == "table" {
		tw = tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
		p.w = tw
	}
	for _, c := range p.fold.List() {
		if err := p.print(c, false); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func connState(c *flow.Connection) string {
	switch {
	case c.Verdict == flow.VerdictDropped:
		return "denied"
	case c.Closed:
		return "closed"
	}
	return "open"
}

func (p *connPrinter) print(c *flow.Connection, fixed bool) error {
	if p.format == "json" {
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode connection: %w", err)
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	client, server := endpointText(c.Client, c.ClientPort), endpointText(c.Server, c.ServerPort)
	policies := make([]string, 0, len(c.Policies))
	for _, pol := range c.Policies {
		policies = append(policies, pol.String())
	}
	verdict := string(c.Verdict)
	if c.DropReason != "" {
		verdict += " " + c.DropReason
	}
	if p.format == "table" {
		cols := []string{c.First.Local().Format(time.StampMilli), client, server, c.Protocol, verdict, connState(c),
			fmt.Sprint(c.Events), fmt.Sprint(c.Packets), fmt.Sprint(c.Bytes), strings.Join(policies, ",")}
		if fixed {
			if !p.header {
				p.header = true
				fmt.Fprintf(p.w, "%-19s  %-45s  %-45s  %-6s  %-25s  %-6s  %6s  %8s  %10s  %s\n",
					"FIRST", "CLIENT", "SERVER", "PROTO", "VERDICT", "STATE", "EVENTS", "PACKETS", "BYTES", "POLICY")
			}
			_, err := fmt.Fprintf(p.w, "%-19s  %-45s  %-45s  %-6s  %-25s  %-6s  %6s  %8s  %10s  %s\n", toAny(cols)...)
			return err
		}
		if !p.header {
			p.header = true
			fmt.Fprintln(p.w, "FIRST\tCLIENT\tSERVER\tPROTO\tVERDICT\tSTATE\tEVENTS\tPACKETS\tBYTES\tPOLICY")
		}
		_, err := fmt.Fprintln(p.w, strings.Join(cols, "\t"))
		return err
	}
	line := fmt.Sprintf("%s: %s -> %s %s %s %s (%d events", c.First.Local().Format(time.StampMilli), client, server,
		c.Protocol, verdict, connState(c), c.Events)
	if c.Closed {
		line += fmt.Sprintf(", %d packets, %d bytes", c.Packets, c.Bytes)
	}
	line += ")"
	if len(policies) > 0 {
		line += " by " + strings.Join(policies, ",")
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
