package agentapi_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/internal/agent"
	"github.com/starlab-dev/starlab/internal/agentapi"
)

// TestPinDirIsTheLoaders keeps agentapi.PinDir (read by the bundle and the scenarios, which must not
// import the loader and its BPF objects) equal to where the loader and the agent's default config pin.
func TestPinDirIsTheLoaders(t *testing.T) {
	assert.Equal(t, loader.DefaultPinDir, agentapi.PinDir)
	cfg := agent.DefaultConfig()
	assert.Equal(t, agentapi.PinDir, cfg.PinDir())
	assert.Equal(t, ":4245", cfg.Listen, "the agent listens on agentapi.Port")
}
