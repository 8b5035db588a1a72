package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestImageBuildRejectsBadInput(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"image", "build", "-o", "yaml"}, `invalid value "yaml" for -o/--output`},
		{[]string{"image", "build", "--kubernetes-version", "v1.20.0"}, "v1.34.4, v1.37.2"},
		{[]string{"image", "build", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.err, func(t *testing.T) {
			root := NewRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			require.ErrorContains(t, root.Execute(), tt.err)
		})
	}
}
