package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBundleFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"file given to -o", []string{"bundle", "-o", "x.tar.gz"}, "write the file name with --output x.tar.gz"},
		{"unknown format", []string{"bundle", "-o", "yaml"}, `invalid value "yaml"`},
		{"zero since", []string{"bundle", "--since", "0s"}, "--since 0s: use a positive window"},
		{"not a tar.gz", []string{"bundle", "--name", "starlab-cli-test-absent", "--output", "x.zip"}, "name it *.tar.gz"},
		{"arguments", []string{"bundle", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestHumanSize(t *testing.T) {
	assert.Equal(t, "512 B", humanSize(512))
	assert.Equal(t, "1.5 KiB", humanSize(1536))
	assert.Equal(t, "1.2 MiB", humanSize(1258291))
}
