package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoCommandOffline(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		out    string
		errHas string
	}{
		{"list", []string{"demo", "--list"}, "3.5 The client may reach the frontend", ""},
		{"list json", []string{"demo", "--list", "-o", "json"}, `"kubectl": "kubectl apply -f manifests/stars/policies/2-allow-ui.yaml"`, ""},
		{"script", []string{"demo", "--script"}, "kubectl apply -f manifests/apis/policies/1-db-only-apis.yaml\n# back: kubectl delete --ignore-not-found -f manifests/apis/policies/1-db-only-apis.yaml\npause\n", ""},
		{"bad output", []string{"demo", "-o", "yaml"}, "", `invalid value "yaml"`},
		{"bad port", []string{"demo", "--port", "70000"}, "", "--port 70000"},
		{"steps not a dir", []string{"demo", "--steps", "/nonexistent", "--list"}, "", "not a directory of part YAML files"},
		{"record without scripted", []string{"demo", "--record", "/tmp/x"}, "", "needs --scripted"},
		{"bad timeout", []string{"demo", "--step-timeout", "0s"}, "", "--step-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := NewRootCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tt.args)
			err := cmd.Execute()
			if tt.errHas != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.errHas)
				return
			}
			require.NoError(t, err)
			assert.Contains(t, out.String(), tt.out)
		})
	}
}
