package workshop

import (
	"fmt"
	"strings"
)

// Cell values of a Matrix.
const (
	Yes     = "yes"
	No      = "no"
	Ignored = "ignored" // a workload reaching itself (hairpin, undefined upstream)
	Absent  = "absent"  // the source or destination does not exist at this step
)

// Matrix is reachability between workloads: Cells[i][j] is Rows[i] connecting to Cols[j].
type Matrix struct {
	Rows  []string   `json:"rows"`
	Cols  []string   `json:"cols"`
	Cells [][]string `json:"cells"`
}

// NewMatrix returns a matrix of rows x cols filled with fill (Ignored on the diagonal).
func NewMatrix(rows, cols []string, fill string) *Matrix {
	m := &Matrix{Rows: rows, Cols: cols, Cells: make([][]string, len(rows))}
	for i, r := range rows {
		m.Cells[i] = make([]string, len(cols))
		for j, c := range cols {
			m.Cells[i][j] = fill
			if r == c {
				m.Cells[i][j] = Ignored
			}
		}
	}
	return m
}

// Get returns the cell of row r, column c ("" when either is unknown).
func (m *Matrix) Get(r, c string) string {
	for i, row := range m.Rows {
		for j, col := range m.Cols {
			if row == r && col == c {
				return m.Cells[i][j]
			}
		}
	}
	return ""
}

// Diff lists the cells where got differs from m, as "from -> to: expected yes, probed no".
func (m *Matrix) Diff(got *Matrix) []string {
	var out []string
	for i, r := range m.Rows {
		for j, c := range m.Cols {
			want, have := m.Cells[i][j], got.Get(r, c)
			if want == Ignored || want == Absent || want == have {
				continue
			}
			out = append(out, fmt.Sprintf("%s -> %s: expected %s, probed %s", r, c, want, have))
		}
	}
	return out
}

// Text renders the matrix as an aligned table (what --scripted prints).
func (m *Matrix) Text() string {
	width := len(`from \ to`)
	for _, n := range append(append([]string{}, m.Rows...), m.Cols...) {
		width = max(width, len(n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", width+2, `from \ to`)
	for _, c := range m.Cols {
		fmt.Fprintf(&b, "%-*s", width+2, c)
	}
	b.WriteString("\n")
	for i, r := range m.Rows {
		fmt.Fprintf(&b, "%-*s", width+2, r)
		for j := range m.Cols {
			fmt.Fprintf(&b, "%-*s", width+2, m.Cells[i][j])
		}
		b.WriteString("\n")
	}
	return b.String()
}
