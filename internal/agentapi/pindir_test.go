package agentapi_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/internal/agentapi"
)

// TestPinDirIsTheLoaders keeps agentapi.PinDir (read by the bundle and the scenarios) equal to where
// the loader pins.
func TestPinDirIsTheLoaders(t *testing.T) {
	assert.Equal(t, loader.DefaultPinDir, agentapi.PinDir)
}
