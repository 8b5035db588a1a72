package flow

import (
	"testing"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/assert"
)

func TestProtocolName(t *testing.T) {
	assert.Equal(t, ProtoTCP, ProtocolName(uint8(maps.ProtoTCP)))
	assert.Equal(t, ProtoUDP, ProtocolName(uint8(maps.ProtoUDP)))
	assert.Equal(t, ProtoICMPv4, ProtocolName(uint8(maps.ProtoICMP)))
	assert.Equal(t, ProtoSCTP, ProtocolName(uint8(maps.ProtoSCTP)))
	assert.Equal(t, "47", ProtocolName(47))
}

// The filter accepts exactly the drop reasons the datapath reports, by their flowevent names.
func TestDropReasonsFromDatapath(t *testing.T) {
	assert.Equal(t, flowevent.DropReasonNames(), dropReasons)
	assert.Contains(t, dropReasons, DropPolicyDenied)
	assert.Equal(t, flowevent.DropPolicyDenied.String(), DropPolicyDenied)
	assert.Equal(t, flowevent.DropFIBLookupFailed.String(), DropFIBLookupFailed)
}
