package scenarios

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Outside go test godog prints a step's failed assertion and its logs with fmt.Printf; suiteOutput
// must send them to the suite's output, in order with the formatter's report, and leave the process's
// stdout (`starlab repro -o json`) alone.
func TestSuiteLinesGoToTheSuiteOutputNotStdout(t *testing.T) {
	realStdout := os.Stdout
	r, w, err := os.Pipe()
	require.NoError(t, err)
	os.Stdout = w
	defer func() { os.Stdout = realStdout }()

	var out bytes.Buffer
	suiteOut, restore, err := suiteOutput(&out, true)
	require.NoError(t, err)
	feature := fstest.MapFS{"x.feature": {Data: []byte("Feature: x\n  Scenario: y\n    Then a check fails\n")}}
	suite := godog.TestSuite{
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			sc.Then(`^a check fails$`, func(ctx context.Context) error {
				godog.Logf(ctx, "step log line")
				assert.Equal(godog.T(ctx), "expected cell", "probed cell", "the assertion text")
				return nil
			})
		},
		Options: &godog.Options{Paths: []string{"x.feature"}, FS: feature, Format: "pretty", Output: suiteOut, Strict: true},
	}
	status := suite.Run()
	restore()

	require.NoError(t, w.Close())
	os.Stdout = realStdout
	leaked, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, 1, status, "the failing step fails the suite")
	assert.Empty(t, string(leaked), "nothing reaches the process's stdout")
	assert.Contains(t, out.String(), "step log line")
	assert.Contains(t, out.String(), "the assertion text")
	report := out.String()
	assert.Less(t, strings.Index(report, "step log line"), strings.Index(report, "1 scenarios"), "in order with the report")
	assert.Contains(t, report, "Failed steps:", "the formatter's report is whole:\n%s", report)
	assert.Same(t, realStdout, os.Stdout)
}
