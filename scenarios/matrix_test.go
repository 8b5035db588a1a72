package scenarios

import (
	"strings"
	"testing"

	"github.com/cucumber/godog"
	messages "github.com/cucumber/messages/go/v34"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func table(rows ...[]string) *godog.Table {
	t := &godog.Table{}
	for _, r := range rows {
		row := &messages.PickleTableRow{}
		for _, c := range r {
			row.Cells = append(row.Cells, &messages.PickleTableCell{Value: c})
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func TestMatrixFromTable(t *testing.T) {
	m, err := MatrixFromTable(table(
		[]string{`from \ to`, "client", "frontend"},
		[]string{"client", "ignored", "yes"},
		[]string{"frontend", "no", "-"},
	))
	require.NoError(t, err)
	assert.Equal(t, []string{"client", "frontend"}, m.Rows)
	assert.Equal(t, Yes, m.Get("client", "frontend"))
	assert.Equal(t, No, m.Get("frontend", "client"))
	assert.Equal(t, Ignored, m.Get("frontend", "frontend"))

	_, err = MatrixFromTable(table([]string{"x", "a"}, []string{"a", "maybe"}))
	require.ErrorContains(t, err, "use yes, no or ignored")
	_, err = MatrixFromTable(table([]string{"x", "a"}, []string{"a"}))
	require.ErrorContains(t, err, "has 1 cells")
	_, err = MatrixFromTable(table([]string{"x", "a"}))
	require.ErrorContains(t, err, "header row")
}

func TestMismatchesAndSideBySide(t *testing.T) {
	exp := NewMatrix([]string{"c", "f"}, []string{"c", "f"})
	exp.Set("c", "c", Ignored)
	exp.Set("c", "f", Yes)
	exp.Set("f", "c", No)
	exp.Set("f", "f", Ignored)
	obs := NewMatrix(exp.Rows, exp.Cols)
	obs.Set("c", "c", Yes)
	obs.Set("c", "f", No)
	obs.Set("f", "c", No)
	assert.Equal(t, []string{"c -> f: expected yes, observed no"}, Mismatches(exp, obs))
	out := SideBySide(exp, map[string]*Matrix{"probes": obs})
	assert.Contains(t, out, "expected")
	assert.Contains(t, out, "x=probes mismatch")
	lines := splitLines(out)
	require.Len(t, lines, 3)
	assert.Regexp(t, `^c +- +yes +\| +c +yes +no +\| +c +- +x`, lines[1])
	assert.Regexp(t, `^f +no +- +\| +f +no +\? +\| +f +\. +-`, lines[2])
}

func splitLines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
