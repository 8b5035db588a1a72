package conformance

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteMarkdown prints the run as Markdown for a CI job summary: totals, per-tag pass rates, the
// failed cases with their wrong cells.
func WriteMarkdown(w io.Writer, r *Report) {
	fmt.Fprintf(w, "## starlab conformance: %d/%d cases passed\n\n", r.Passed, len(r.Cases))
	fmt.Fprintf(w, "Target `%s`, profile `%s`, flows `%s`. %s\n\n", r.Target, r.Profile, r.Flows, Summary(r))
	fmt.Fprintln(w, "| tag | passed | failed |\n|---|---|---|")
	type tally struct{ pass, fail int }
	byTag := map[string]*tally{}
	for _, c := range r.Cases {
		for _, t := range c.Tags {
			if byTag[t] == nil {
				byTag[t] = &tally{}
			}
			if c.Passed {
				byTag[t].pass++
			} else {
				byTag[t].fail++
			}
		}
	}
	var tags []string
	for t := range byTag {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		fmt.Fprintf(w, "| %s | %d | %d |\n", t, byTag[t].pass, byTag[t].fail)
	}
	failed := false
	for _, c := range r.Cases {
		if c.Passed {
			continue
		}
		if !failed {
			fmt.Fprintln(w, "\n### Failed cases")
			failed = true
		}
		fmt.Fprintf(w, "\n#### %s\n\n", c.Name)
		if c.Error != "" {
			fmt.Fprintf(w, "Error: %s\n\n", c.Error)
		}
		fmt.Fprintln(w, "| step | mode | from | to | port | expected | probed | observed | why |\n|---|---|---|---|---|---|---|---|---|")
		for _, s := range c.Steps {
			for _, cell := range s.Cells {
				if !cell.Wrong {
					continue
				}
				probed, observed := "-", "-"
				if cell.Probe != nil {
					probed = verdictWord(cell.Probe.Reachable)
				}
				if cell.Observed != nil {
					observed = cell.Observed.Verdict
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s/%d | %s | %s | %s | %s |\n", s.Name, cell.Mode, cell.From, cell.To, cell.Protocol, cell.Port,
					verdictWord(cell.Expected), probed, observed, strings.ReplaceAll(strings.Join(cell.Why, "; "), "|", "\\|"))
			}
		}
	}
}
