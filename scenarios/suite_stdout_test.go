package scenarios

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"testing/fstest"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Outside go test godog prints a step's failed assertion and its logs with fmt.Printf; runPrintingTo
// must send them to the suite's output and leave the process's stdout (`starlab repro -o json`) alone.
func TestSuiteLinesGoToTheSuiteOutputNotStdout(t *testing.T) {
	realStdout := os.Stdout
	r, w, err := os.Pipe()
	require.NoError(t, err)
	os.Stdout = w
	defer func() { os.Stdout = realStdout }()

	var out bytes.Buffer
	feature := fstest.MapFS{"x.feature": {Data: []byte("Feature: x\n  Scenario: y\n    Then a check fails\n")}}
	suite := godog.TestSuite{
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			sc.Then(`^a check fails$`, func(ctx context.Context) error {
				godog.Logf(ctx, "step log line")
				assert.Equal(godog.T(ctx), "expected cell", "probed cell", "the assertion text")
				return nil
			})
		},
		Options: &godog.Options{Paths: []string{"x.feature"}, FS: feature, Format: "pretty", Output: &out, Strict: true},
	}
	status := runPrintingTo(&out, true, suite.Run)

	require.NoError(t, w.Close())
	os.Stdout = realStdout
	leaked, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, 1, status, "the failing step fails the suite")
	assert.Empty(t, string(leaked), "nothing reaches the process's stdout")
	assert.Contains(t, out.String(), "step log line")
	assert.Contains(t, out.String(), "the assertion text")
	assert.Same(t, realStdout, os.Stdout)
}
