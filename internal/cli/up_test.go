package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpSetNeedsKeyValue: a malformed --set fails before anything runs, naming the value and the form.
func TestUpSetNeedsKeyValue(t *testing.T) {
	_, err := run(t, "--name", "nosuchlab-settest", "up", "--set", "clusterNetworkPolicy.experimental")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--set "clusterNetworkPolicy.experimental"`)
	assert.Contains(t, err.Error(), "key.path=value")
}
