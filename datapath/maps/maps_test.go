package maps

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIPConversion(t *testing.T) {
	v, err := IPToU32(netip.MustParseAddr("10.244.1.2"))
	require.NoError(t, err)
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	assert.Equal(t, [4]byte{10, 244, 1, 2}, b, "in-memory bytes are network order")
	assert.Equal(t, "10.244.1.2", U32ToIP(v).String())
	_, err = IPToU32(netip.MustParseAddr("fd00::1"))
	require.Error(t, err)
	assert.Equal(t, uint16(0x5000), Htons(80))
	assert.Equal(t, uint16(80), Ntohs(Htons(80)))
}

func TestPolicyKeyRaw(t *testing.T) {
	tests := []struct {
		name    string
		key     PolicyKey
		prefix  uint32
		port    uint16 // network order
		wantErr bool
	}{
		{"exact port", PolicyKey{EpID: 7, PeerID: 256, Dir: Ingress, Proto: ProtoTCP, Port: 8080, PortPrefixLen: 16}, 96, Htons(8080), false},
		{"port range prefix masks low bits", PolicyKey{EpID: 7, Dir: Egress, Proto: ProtoTCP, Port: 8081, PortPrefixLen: 12}, 92, Htons(8080), false},
		{"any proto", PolicyKey{EpID: 7, Dir: Ingress}, 80, 0, false},
		{"port without proto", PolicyKey{EpID: 7, Dir: Ingress, Port: 80, PortPrefixLen: 16}, 0, 0, true},
		{"bad dir", PolicyKey{EpID: 7, Dir: 3}, 0, 0, true},
		{"prefix too long", PolicyKey{EpID: 7, Dir: Ingress, Proto: ProtoTCP, PortPrefixLen: 17}, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.key.raw()
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.prefix, r.Prefixlen)
			assert.Equal(t, tc.port, r.Port)
		})
	}
}

func TestCIDRKeyRaw(t *testing.T) {
	r, err := CIDRPolicyKey{EpID: 3, Dir: Egress, Proto: ProtoTCP, Port: 443, Prefix: netip.MustParsePrefix("10.1.2.3/16")}.raw()
	require.NoError(t, err)
	assert.Equal(t, uint32(64+16), r.Prefixlen)
	assert.Equal(t, "10.1.0.0", U32ToIP(r.Ip).String(), "prefix is masked")
	_, err = CIDRPolicyKey{EpID: 3, Dir: Egress, Port: 443, Prefix: netip.MustParsePrefix("10.0.0.0/8")}.raw()
	require.Error(t, err)
}

func TestServiceKeyRaw(t *testing.T) {
	_, err := ServiceKey{Port: 30080, Proto: ProtoTCP, Scope: ScopeNodePort}.raw()
	require.NoError(t, err)
	_, err = ServiceKey{VIP: netip.MustParseAddr("0.0.0.0"), Port: 30080, Proto: ProtoTCP, Scope: ScopeNodePort}.raw()
	require.NoError(t, err)
	_, err = ServiceKey{VIP: netip.MustParseAddr("10.0.0.1"), Port: 30080, Proto: ProtoTCP, Scope: ScopeNodePort}.raw()
	require.Error(t, err)
	_, err = ServiceKey{Port: 80, Proto: ProtoTCP}.raw()
	require.Error(t, err, "ClusterIP needs a VIP")
	_, err = ServiceKey{VIP: netip.MustParseAddr("10.96.0.1"), Port: 80, Proto: ProtoICMP}.raw()
	require.Error(t, err)
}
