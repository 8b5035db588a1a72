package scenarios

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cucumber/godog"
)

// Cell is one expectation of a reachability matrix.
type Cell string

// Cell values as written in feature tables.
const (
	Yes     Cell = "yes"
	No      Cell = "no"
	Ignored Cell = "ignored"
	Unknown Cell = "?" // observed only: no evidence either way
)

func parseCell(s string) (Cell, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "y", "ok":
		return Yes, nil
	case "no", "n", "drop":
		return No, nil
	case "ignored", "-", "":
		return Ignored, nil
	}
	return "", fmt.Errorf("matrix cell %q: use yes, no or ignored", s)
}

// Matrix is a reachability truth table: Rows are sources, Cols are targets.
type Matrix struct {
	Rows, Cols []string
	cells      map[[2]string]Cell
}

// NewMatrix returns a matrix with every cell Unknown.
func NewMatrix(rows, cols []string) *Matrix {
	m := &Matrix{Rows: rows, Cols: cols, cells: map[[2]string]Cell{}}
	for _, r := range rows {
		for _, c := range cols {
			m.cells[[2]string{r, c}] = Unknown
		}
	}
	return m
}

// ignoredLike returns a matrix of expected's shape with its ignored cells Ignored and the rest Unknown.
func ignoredLike(expected *Matrix) *Matrix {
	m := NewMatrix(expected.Rows, expected.Cols)
	for _, r := range expected.Rows {
		for _, c := range expected.Cols {
			if expected.Get(r, c) == Ignored {
				m.Set(r, c, Ignored)
			}
		}
	}
	return m
}

// Get returns the cell from -> to.
func (m *Matrix) Get(from, to string) Cell { return m.cells[[2]string{from, to}] }

// Set sets the cell from -> to.
func (m *Matrix) Set(from, to string, c Cell) { m.cells[[2]string{from, to}] = c }

// MatrixFromTable reads a Gherkin table: the header row names the targets (its first cell is a label
// such as "from \ to"), each further row starts with the source.
func MatrixFromTable(t *godog.Table) (*Matrix, error) {
	if t == nil || len(t.Rows) < 2 {
		return nil, fmt.Errorf("reachability table: want a header row of targets and one row per source")
	}
	var cols []string
	for _, c := range t.Rows[0].Cells[1:] {
		cols = append(cols, strings.TrimSpace(c.Value))
	}
	var rows []string
	for _, r := range t.Rows[1:] {
		rows = append(rows, strings.TrimSpace(r.Cells[0].Value))
	}
	m := NewMatrix(rows, cols)
	for i, r := range t.Rows[1:] {
		if len(r.Cells) != len(cols)+1 {
			return nil, fmt.Errorf("reachability table row %q has %d cells, the header has %d", rows[i], len(r.Cells), len(cols)+1)
		}
		for j, c := range r.Cells[1:] {
			cell, err := parseCell(c.Value)
			if err != nil {
				return nil, fmt.Errorf("row %q column %q: %w", rows[i], cols[j], err)
			}
			m.Set(rows[i], cols[j], cell)
		}
	}
	return m, nil
}

// Mismatches lists "from -> to: expected X, observed Y" for every non-ignored cell that differs.
func Mismatches(expected, observed *Matrix) []string {
	var out []string
	for _, r := range expected.Rows {
		for _, c := range expected.Cols {
			e := expected.Get(r, c)
			if e == Ignored {
				continue
			}
			if o := observed.Get(r, c); o != e {
				out = append(out, fmt.Sprintf("%s -> %s: expected %s, observed %s", r, c, e, o))
			}
		}
	}
	return out
}

func short(c Cell) string {
	switch c {
	case Yes:
		return "yes"
	case No:
		return "no"
	case Ignored:
		return "-"
	}
	return string(c)
}

// SideBySide renders the expected matrix and each observed one next to each other (netpol truth-table
// style) and a comparison table where 'x' marks a mismatch and '.' a match.
func SideBySide(expected *Matrix, observed map[string]*Matrix) string {
	names := make([]string, 0, len(observed))
	for n := range observed {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	header := func(title string) string {
		return title + "\t" + strings.Join(expected.Cols, "\t") + "\t"
	}
	line := []string{header("expected")}
	for _, n := range names {
		line = append(line, header(n))
		line = append(line, header("x="+n+" mismatch"))
	}
	fmt.Fprintln(tw, strings.Join(line, "|\t"))
	for _, r := range expected.Rows {
		var parts []string
		row := r + "\t"
		for _, c := range expected.Cols {
			row += short(expected.Get(r, c)) + "\t"
		}
		parts = append(parts, row)
		for _, n := range names {
			o := observed[n]
			row, cmp := r+"\t", r+"\t"
			for _, c := range expected.Cols {
				row += short(o.Get(r, c)) + "\t"
				switch {
				case expected.Get(r, c) == Ignored:
					cmp += "-\t"
				case expected.Get(r, c) == o.Get(r, c):
					cmp += ".\t"
				default:
					cmp += "x\t"
				}
			}
			parts = append(parts, row, cmp)
		}
		fmt.Fprintln(tw, strings.Join(parts, "|\t"))
	}
	_ = tw.Flush()
	return b.String()
}
