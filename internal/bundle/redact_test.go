package bundle

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Secret value that is a JSON scalar (kubeadm's bootstrap token Secret holds "true") is not
// replaced in every file: the JSON a bundle holds stays valid; longer real values still are.
func TestRedactorKeepsJSONValidWithScalarSecretValues(t *testing.T) {
	for v, everywhere := range map[string]bool{"true": false, "false": false, "null": false, "30000": false, "1.5e3": false,
		"abc": false, "abcdef": true, "pw-1234": true, `{"a":1}`: true} {
		assert.Equal(t, everywhere, replacedEverywhere(v), v)
	}
	r := NewRedactor(nil, []string{"true", "30000", "pw-secret"})
	out := r.Bytes([]byte(`{"redacted": true, "port": 30000, "note": "pw-secret"}`))
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m), "%s", out)
	assert.Equal(t, map[string]any{"redacted": true, "port": float64(30000), "note": Redacted}, m)
}
