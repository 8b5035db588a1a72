package conformance

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLabelPatch(t *testing.T) {
	tests := []struct {
		name      string
		cur, want map[string]string
		keep      []string
		patch     string
		changed   bool
	}{
		{"same", map[string]string{"pod": "a"}, map[string]string{"pod": "a"}, nil, "", false},
		{"changed value", map[string]string{"pod": "a"}, map[string]string{"pod": "d"}, nil, `{"metadata":{"labels":{"pod":"d"}}}`, true},
		{"removed key", map[string]string{"pod": "a", "x": "1"}, map[string]string{"pod": "a"}, nil, `{"metadata":{"labels":{"x":null}}}`, true},
		{"kept key stays", map[string]string{"ns": "y", "kubernetes.io/metadata.name": "y"}, map[string]string{"ns": "other"}, []string{"kubernetes.io/metadata.name"}, `{"metadata":{"labels":{"ns":"other"}}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := labelPatch(tt.cur, tt.want, tt.keep...)
			assert.Equal(t, tt.changed, changed)
			if tt.changed {
				assert.JSONEq(t, tt.patch, string(got))
			}
		})
	}
}

func TestStateOfKeepsPodIDLabel(t *testing.T) {
	u := NewUniverse()
	st := u.StateOf(Step{PodLabels: map[string]map[string]string{"x/c": {"pod": "b"}}, NamespaceLabels: map[string]map[string]string{"z": {"ns": "y"}}})
	assert.Equal(t, map[string]string{"pod": "b", PodIDLabel: "c"}, st.PodLabels["x/c"])
	assert.Equal(t, map[string]string{"pod": "a", PodIDLabel: "a"}, st.PodLabels["x/a"])
	assert.Equal(t, map[string]string{"ns": "y"}, st.NamespaceLabels["z"])
}
