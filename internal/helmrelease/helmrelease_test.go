package helmrelease

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/charts"
)

const miniChart = "apiVersion: v2\nname: mini\nversion: 0.1.0\n"

func TestLoadChart(t *testing.T) {
	fsys := fstest.MapFS{
		"c/Chart.yaml":          {Data: []byte(miniChart)},
		"c/values.yaml":         {Data: []byte("greeting: hello\n")},
		"c/templates/cm.yaml":   {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mini}\ndata: {greeting: {{ .Values.greeting | quote }}}\n")},
		"other/Chart.yaml":      {Data: []byte("apiVersion: v2\nname: other\nversion: 0.1.0\n")},
		"empty/.keep/README.md": {Data: nil},
	}
	tests := []struct {
		dir, wantName, wantErr string
	}{
		{dir: "c", wantName: "mini"},
		{dir: "other", wantName: "other"},
		{dir: "missing", wantErr: "read chart missing"},
		{dir: "empty", wantErr: "load chart empty"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			c, err := LoadChart(fsys, tt.dir)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantName, c.Metadata.Name)
		})
	}
}

func TestRenderValues(t *testing.T) {
	fsys := fstest.MapFS{
		"c/Chart.yaml":        {Data: []byte(miniChart)},
		"c/values.yaml":       {Data: []byte("greeting: hello\n")},
		"c/templates/cm.yaml": {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mini}\ndata: {greeting: {{ .Values.greeting | quote }}}\n")},
	}
	out, err := Render(context.Background(), Options{Chart: fsys, ChartDir: "c", Values: map[string]any{"greeting": "bonjour"}})
	require.NoError(t, err)
	assert.Contains(t, out, `greeting: "bonjour"`)
}

// TestRenderStarlabChart renders the embedded chart with the values `starlab up` passes.
func TestRenderStarlabChart(t *testing.T) {
	values := map[string]any{
		"agent": map[string]any{
			"image":     "localhost/starlab/agent:0123456789abcdef",
			"apiServer": map[string]any{"host": "172.18.0.2", "port": 6443},
		},
	}
	out, err := Render(context.Background(), Options{Chart: charts.Starlab, ChartDir: "starlab", Values: values})
	require.NoError(t, err)
	assert.Contains(t, out, "localhost/starlab/agent:0123456789abcdef")
	assert.Contains(t, out, "172.18.0.2")
	assert.Contains(t, out, "kind: DaemonSet")
}
