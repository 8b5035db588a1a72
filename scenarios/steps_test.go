package scenarios

import (
	"bufio"
	"context"
	"io/fs"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/features"
	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/manifests"
)

// featureSteps returns the step texts of a feature file (without the Given/When/Then/And/But keyword).
func featureSteps(t *testing.T, file string) []string {
	t.Helper()
	data, err := fs.ReadFile(features.FS, file)
	require.NoError(t, err)
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, kw := range []string{"Given ", "When ", "Then ", "And ", "But "} {
			if rest, ok := strings.CutPrefix(line, kw); ok {
				out = append(out, rest)
			}
		}
	}
	require.NotEmpty(t, out, "%s has no steps", file)
	return out
}

// TestStepTables checks each steps type's table against its feature: every expression compiles and
// has one capture group per argument of its method, no step line matches two expressions, and every
// expression is used by the feature.
func TestStepTables(t *testing.T) {
	w := newWorld(&Env{})
	ctxType := reflect.TypeFor[context.Context]()
	errType := reflect.TypeFor[error]()
	tableType := reflect.TypeFor[*godog.Table]()
	docStringType := reflect.TypeFor[*godog.DocString]()
	for _, tc := range []struct {
		feature string
		steps   []step
	}{
		{"services.feature", newServicesSteps(w).steps()},
		{"observer.feature", newObserverSteps(w).steps()},
		{"stars.feature", newStarsSteps(w).steps()},
		{"policy.feature", newShopSteps(w).steps()},
	} {
		t.Run(tc.feature, func(t *testing.T) {
			lines := featureSteps(t, tc.feature)
			used := make([]bool, len(tc.steps))
			res := make([]*regexp.Regexp, len(tc.steps))
			for i, s := range tc.steps {
				re, err := regexp.Compile(s.expr)
				require.NoError(t, err, s.expr)
				res[i] = re
				fn := reflect.TypeOf(s.fn)
				require.Equal(t, reflect.Func, fn.Kind(), s.expr)
				require.GreaterOrEqual(t, fn.NumIn(), 1, s.expr)
				assert.Equal(t, ctxType, fn.In(0), "%s: first argument", s.expr)
				args := fn.NumIn() - 1
				if last := fn.In(fn.NumIn() - 1); last == tableType || last == docStringType {
					args-- // the step's table or doc string follows the captured arguments
				}
				assert.Equal(t, re.NumSubexp(), args, "%s: capture groups vs arguments", s.expr)
				require.Equal(t, 1, fn.NumOut(), s.expr)
				assert.Equal(t, errType, fn.Out(0), s.expr)
			}
			for _, line := range lines {
				var matched []string
				for i, re := range res {
					if re.MatchString(line) {
						matched = append(matched, tc.steps[i].expr)
						used[i] = true
					}
				}
				assert.LessOrEqual(t, len(matched), 1, "step %q matches %v", line, matched)
			}
			for i, u := range used {
				assert.True(t, u, "expression %s is used by no step of %s", tc.steps[i].expr, tc.feature)
			}
		})
	}
}

// TestWorkloadFiles checks the features' workload files: they decode, stay in their feature's
// namespace, and run the demo image (placeholder replaced at apply).
func TestWorkloadFiles(t *testing.T) {
	for file, ns := range map[string]string{"services.yaml": svcNamespace, "observer.yaml": obsNamespace} {
		text, err := testdataFile(file)
		require.NoError(t, err)
		objs, err := lab.DecodeManifests([]byte(text))
		require.NoError(t, err, file)
		require.NotEmpty(t, objs)
		assert.Equal(t, "Namespace", objs[0].GetKind(), "%s: the namespace first", file)
		assert.Equal(t, ns, objs[0].GetName())
		deployments := 0
		for _, o := range objs[1:] {
			assert.Equal(t, ns, o.GetNamespace(), "%s: %s %s", file, o.GetKind(), o.GetName())
			if o.GetKind() != "Deployment" {
				continue
			}
			deployments++
			assert.Contains(t, text, "image: "+manifests.DemoImagePlaceholder)
		}
		assert.Positive(t, deployments, file)

		// applyWorkloads' substitution puts the built demo image into every Deployment.
		const ref = "localhost/starlab/demo:0123456789abcdef"
		objs, err = lab.DecodeManifests([]byte(lab.SubstituteImages(text, map[string]string{images.Demo: ref})))
		require.NoError(t, err)
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			require.NoError(t, err)
			for _, c := range containers {
				assert.Equal(t, ref, c.(map[string]any)["image"], "%s: %s", file, o.GetName())
			}
		}
	}
}

func TestRenderTestdata(t *testing.T) {
	data, err := renderTestdata("annotated-service.yaml", map[string]string{"Name": "web-x", "Namespace": svcNamespace,
		"Key": `starlab.dev/odd"key`, "Value": "a: b"})
	require.NoError(t, err)
	objs, err := lab.DecodeManifests(data)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, "web-x", objs[0].GetName())
	assert.Equal(t, svcNamespace, objs[0].GetNamespace())
	assert.Equal(t, map[string]string{`starlab.dev/odd"key`: "a: b"}, objs[0].GetAnnotations(), "quoted whatever the step passes")

	data, err = renderTestdata("unrepresentable-policy.yaml", map[string]string{"Name": "wide", "Namespace": svcNamespace})
	require.NoError(t, err)
	objs, err = lab.DecodeManifests(data)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, "NetworkPolicy", objs[0].GetKind())
	assert.Equal(t, "wide", objs[0].GetName())

	_, err = renderTestdata("unrepresentable-policy.yaml", map[string]string{"Name": "wide"})
	assert.Error(t, err, "a missing field is an error, not <no value>")
	_, err = renderTestdata("missing.yaml", nil)
	assert.Error(t, err)
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics("# HELP starlab_x x\n# TYPE starlab_x counter\nstarlab_x{node=\"a b\",verdict=\"DROPPED\"} 3\r\ngo_goroutines 9\nstarlab_y 1.5e+06\n")
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{`starlab_x{node="a b",verdict="DROPPED"}`: 3, "starlab_y": 1.5e6}, m)
	_, err = parseMetrics("starlab_x notanumber\n")
	assert.ErrorContains(t, err, "starlab_x")
}

// TestEveryFeatureStepIsDefinedOnce checks every step of every feature against all step tables:
// exactly one expression matches it (what godog reports as undefined or ambiguous at run time).
func TestEveryFeatureStepIsDefinedOnce(t *testing.T) {
	all := scenarioSteps(newWorld(&Env{}))
	files, err := fs.Glob(features.FS, "*.feature")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		for _, line := range featureSteps(t, file) {
			var matched []string
			for _, s := range all {
				if regexp.MustCompile(s.expr).MatchString(line) {
					matched = append(matched, s.expr)
				}
			}
			assert.Len(t, matched, 1, "%s: step %q matches %v", file, line, matched)
		}
	}
}
