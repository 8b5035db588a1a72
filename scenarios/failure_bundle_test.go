package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/internal/bundle"
)

func TestScenarioLine(t *testing.T) {
	feature := []byte("@x\nFeature: f\n\n  Background:\n    Given a\n\n  Scenario: first\n    Then b\n\n  Rule: r\n    Scenario: in a rule\n      Then c\n")
	l, err := scenarioLine(feature, "first")
	require.NoError(t, err)
	assert.Equal(t, 7, l)
	l, err = scenarioLine(feature, "in a rule")
	require.NoError(t, err)
	assert.Equal(t, 11, l)
	_, err = scenarioLine(feature, "absent")
	assert.ErrorContains(t, err, `no scenario named "absent"`)
}

func TestMatrixTruthCells(t *testing.T) {
	exp := NewMatrix([]string{"a", "b"}, []string{"a", "b"})
	exp.Set("a", "a", Ignored)
	exp.Set("a", "b", Yes)
	exp.Set("b", "a", No)
	exp.Set("b", "b", Ignored)
	probes, flows := ignoredLike(exp), ignoredLike(exp)
	probes.Set("a", "b", No)
	probes.Set("b", "a", No)
	flows.Set("a", "b", No)
	flows.Set("b", "a", Unknown)
	cells := matrixTruthCells(exp, probes, flows, map[[2]string][]string{{"b", "a"}: {"no flow"}})
	require.Len(t, cells, 4)
	assert.Equal(t, bundle.TruthCell{From: "a", To: "a", Expected: "ignored", Probed: "ignored", Observed: "ignored"}, cells[0])
	assert.Equal(t, bundle.TruthCell{From: "a", To: "b", Expected: "yes", Probed: "no", Observed: "no", Wrong: true}, cells[1])
	assert.Equal(t, bundle.TruthCell{From: "b", To: "a", Expected: "no", Probed: "no", Observed: "?", Wrong: true, Why: []string{"no flow"}}, cells[2])
}

func TestStripServerFields(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"kind": "NetworkPolicy", "status": map[string]any{},
		"metadata": map[string]any{"name": "p", "uid": "1", "resourceVersion": "9", "creationTimestamp": "x", "managedFields": []any{}, "labels": map[string]any{"a": "b"}},
	}}
	got := StripServerFields(u)
	assert.Equal(t, map[string]any{"kind": "NetworkPolicy", "metadata": map[string]any{"name": "p", "labels": map[string]any{"a": "b"}}}, got)
	assert.Contains(t, u.Object["metadata"], "uid", "the original is left alone")
}

func TestFeatureFilePath(t *testing.T) {
	assert.Equal(t, "/tmp/x/flipped.feature", featureFilePath("/tmp/x/flipped.feature:7"))
	assert.Equal(t, "features/stars.feature", featureFilePath("features/stars.feature:7:12"))
	assert.Equal(t, "features/stars.feature", featureFilePath("features/stars.feature"))
	assert.Equal(t, `C:\f.feature`, featureFilePath(`C:\f.feature`))
}
