package workshop

import (
	"fmt"
	"io"
	"strings"
)

// WriteList prints the parts and their steps, one line each (what `starlab demo --list` prints).
func WriteList(w io.Writer, parts []Part) error {
	for pi, p := range parts {
		if _, err := fmt.Fprintf(w, "%s [%s]\n", p.Title, p.Name); err != nil {
			return err
		}
		for si, s := range p.Steps {
			line := s.Kubectl()
			if line == "" && s.Figure != "" {
				line = "(figure " + s.Figure + ")"
			} else if line == "" {
				line = "(the lab as it is)"
			}
			if _, err := fmt.Fprintf(w, "  %d.%d %-40s %s\n", pi+1, si+1, s.Title, line); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteShellScript prints every step's commands as a shell script a presenter can rehearse with,
// without Starlab (what `starlab demo --script` prints). Run it from the repository root.
func WriteShellScript(w io.Writer, parts []Part) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# The Starlab workshop, step by step. Run from the repository root, with KUBECONFIG set to the lab's.\nset -eu\n")
	b.WriteString("pause() { printf '\\n-- press Enter for the next step -- '; read -r _; }\n")
	for _, p := range parts {
		fmt.Fprintf(&b, "\n######## %s\n", p.Title)
		for _, s := range p.Steps {
			fmt.Fprintf(&b, "\n# %s\n", s.Title)
			for _, line := range wrap(s.Narrative, 96) {
				fmt.Fprintf(&b, "#   %s\n", line)
			}
			if cmd := s.Kubectl(); cmd != "" {
				fmt.Fprintf(&b, "echo '$ %s'\n%s\n", strings.ReplaceAll(cmd, "'", `'\''`), cmd)
			}
			if undo := s.UndoKubectl(); undo != "" {
				fmt.Fprintf(&b, "# back: %s\n", undo)
			}
			b.WriteString("pause\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func wrap(s string, width int) []string {
	var lines []string
	cur := ""
	for _, word := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
