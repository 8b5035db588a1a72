package scenarios

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRunChromiumMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := chromiumDOM(context.Background(), "http://127.0.0.1:1/")
	assert.ErrorContains(t, err, "chromium not found")
}
