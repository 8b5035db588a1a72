package scenarios

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Outside go test a step's log line goes to the suite's output (starlab repro -o json keeps stdout
// for its JSON answer), not to os.Stdout as godog.Logf would print it.
func TestStepLogGoesToTheSuiteOutput(t *testing.T) {
	var out bytes.Buffer
	e := &Env{stepOut: &out}
	e.logf(context.Background(), "policy %s programmed on every node", "default-deny")
	assert.Equal(t, "policy default-deny programmed on every node\n", out.String())
}
