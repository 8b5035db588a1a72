package conformance

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// cellMarks returns the cell as three marks: expected, probed, observed ("." allowed, "X" denied,
// "?" unknown, "-" not there), "*" appended when wrong; "#" for ignored (loopback) cells.
func cellMarks(c Cell) string {
	if c.Ignored {
		return "#"
	}
	mark := func(allowed bool) string {
		if allowed {
			return "."
		}
		return "X"
	}
	s := mark(c.Expected)
	if c.Probe != nil {
		s += mark(c.Probe.Reachable)
	} else {
		s += "-"
	}
	switch {
	case c.Observed == nil:
		s += "-"
	case c.Observed.Verdict == ObservedAllowed:
		s += "."
	case c.Observed.Verdict == ObservedDenied:
		s += "X"
	default:
		s += "?"
	}
	if c.Wrong {
		s += "*"
	}
	return s
}

// groupCells splits a step's cells by column (port/protocol), keeping the pod order.
func groupCells(cells []Cell) ([]string, map[string][]Cell) {
	var order []string
	out := map[string][]Cell{}
	for _, c := range cells {
		k := fmt.Sprintf("%s %s/%d", c.Mode, c.Protocol, c.Port)
		if _, ok := out[k]; !ok {
			order = append(order, k)
		}
		out[k] = append(out[k], c)
	}
	return order, out
}

func podsOf(cells []Cell) []string {
	var pods []string
	seen := map[string]bool{}
	for _, c := range cells {
		if !seen[c.From] {
			seen[c.From] = true
			pods = append(pods, c.From)
		}
	}
	return pods
}

// WriteTruthTables prints each step of res as truth tables (cells: expected, probed, observed) and
// every wrong cell with its explanation.
func WriteTruthTables(w io.Writer, res CaseResult) {
	for _, s := range res.Steps {
		fmt.Fprintf(w, "  step %q: policies %v, programmed in %s, %d probes in %s\n", s.Name, s.Policies, s.ProgramWait.Round(1e6), s.Probes, s.ProbeTime.Round(1e6))
		if s.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", s.Error)
		}
		order, groups := groupCells(s.Cells)
		for _, k := range order {
			cells := groups[k]
			pods := podsOf(cells)
			fmt.Fprintf(w, "    %s\n    %-6s %s\n", k, "", strings.Join(padAll(pods, 4), " "))
			for i, from := range pods {
				row := make([]string, len(pods))
				for j := range pods {
					row[j] = fmt.Sprintf("%-4s", cellMarks(cells[i*len(pods)+j]))
				}
				fmt.Fprintf(w, "    %-6s %s\n", from, strings.Join(row, " "))
			}
		}
		for _, c := range s.Cells {
			if c.Wrong {
				fmt.Fprintf(w, "    WRONG %s %s -> %s %s/%d: %s\n", c.Mode, c.From, c.To, c.Protocol, c.Port, strings.Join(c.Why, "; "))
				if c.Observed != nil {
					for _, f := range c.Observed.Flows {
						fmt.Fprintf(w, "          flow: %s\n", f)
					}
				}
			}
		}
	}
}

func padAll(s []string, n int) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%-*s", n, v)
	}
	return out
}

// WriteText prints the whole report: a truth table per case (all cases with verbose, else only
// failed ones) and the totals.
func WriteText(w io.Writer, r *Report, verbose bool) {
	fmt.Fprintln(w, "cells: expected / probed / observed; . allowed, X denied, ? unknown, - none, # loopback (ignored), * wrong")
	for _, c := range r.Cases {
		if c.Passed && !verbose {
			continue
		}
		status := "PASS"
		if !c.Passed {
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s %s [%s]\n", status, c.Name, strings.Join(c.Tags, ","))
		if c.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", c.Error)
		}
		WriteTruthTables(w, c)
	}
	fmt.Fprintln(w, Summary(r))
}

// Summary is the one-line result.
func Summary(r *Report) string {
	return fmt.Sprintf("%d cases: %d passed, %d failed in %s (setup %s; probe matrix mean %s, max %s; flows %s)",
		len(r.Cases), r.Passed, r.Failed, r.Duration.Round(1e8), r.Setup.Round(1e8), r.MeanProbe.Round(1e6), r.MaxProbe.Round(1e6), r.Flows)
}

// WriteLiveTables prints a live check as truth tables, one per probe mode and port (rows: sources,
// columns: destinations; cells: expected, probed, observed), then every wrong cell with the
// oracle's reason, what was wrong and the connection's flows.
func WriteLiveTables(w io.Writer, r *LiveResult) {
	fmt.Fprintf(w, "policies %v; %d connections (%d wrong) in %s\n", r.Policies, r.Probes, r.Wrong, r.ProbeTime.Round(1e6))
	fmt.Fprintln(w, "cells: expected / probed / observed; . allowed, X denied, ? unknown, - none, * wrong; blank: not served")
	order, groups := groupCells(r.Cells)
	for _, k := range order {
		cells := groups[k]
		var rows, cols []string
		byPair := map[[2]string]Cell{}
		for _, c := range cells {
			if !slices.Contains(rows, c.From) {
				rows = append(rows, c.From)
			}
			if !slices.Contains(cols, c.To) {
				cols = append(cols, c.To)
			}
			byPair[[2]string{c.From, c.To}] = c
		}
		width := len("from \\ to")
		for _, n := range append(slices.Clone(rows), cols...) {
			width = max(width, len(n))
		}
		fmt.Fprintf(w, "  %s\n  %-*s %s\n", k, width, "from \\ to", strings.Join(padAll(cols, width), " "))
		for _, from := range rows {
			row := make([]string, len(cols))
			for j, to := range cols {
				mark := ""
				if c, ok := byPair[[2]string{from, to}]; ok {
					mark = cellMarks(c)
				}
				row[j] = fmt.Sprintf("%-*s", width, mark)
			}
			fmt.Fprintf(w, "  %-*s %s\n", width, from, strings.Join(row, " "))
		}
	}
	for _, c := range r.Cells {
		if !c.Wrong {
			continue
		}
		fmt.Fprintf(w, "  WRONG %s %s -> %s %s/%d: %s\n", c.Mode, c.From, c.To, c.Protocol, c.Port, strings.Join(c.Why, "; "))
		fmt.Fprintf(w, "        oracle: %s\n", c.Reason)
		if c.Observed != nil {
			for _, f := range c.Observed.Flows {
				fmt.Fprintf(w, "        flow: %s\n", f)
			}
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  not probed: %s\n", s)
	}
}
