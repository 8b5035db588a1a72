package workshop

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/features"
	"github.com/starlab-dev/starlab/manifests"
)

func TestDefaultPartsInOrder(t *testing.T) {
	parts := defaultParts(t)
	var got [][]string
	for _, p := range parts {
		names := []string{p.Name}
		for _, s := range p.Steps {
			names = append(names, s.Name)
		}
		got = append(got, names)
	}
	assert.Equal(t, [][]string{
		{"datapath", "no-kube-proxy", "no-kube-svc", "observer", "bench"},
		{"shop", "who-talks-to-whom", "stranger", "db-only-apis"},
		{"stars", "no-policy", "default-deny", "allow-ui", "backend-policy", "frontend-policy"},
	}, got)
	stars := parts[2]
	for i, f := range manifests.StarsPolicySteps() {
		st := stars.Steps[i+1]
		require.Len(t, st.Objects, 1, st.Name)
		assert.Equal(t, f, st.Objects[0].Path)
		assert.Equal(t, "kubectl apply -f manifests/"+f, st.Kubectl())
		assert.Equal(t, "kubectl delete --ignore-not-found -f manifests/"+f, st.UndoKubectl())
	}
	assert.Equal(t, `sed "s|localhost/starlab/demo:TAG|$(kubectl -n shop get deploy db -o jsonpath='{.spec.template.spec.containers[0].image}')|" internal/workshop/parts/stranger.yaml | kubectl apply -f -`, parts[1].Steps[1].Kubectl())
}

// featureTables returns the reachability tables of the first scenario of features/stars.feature,
// in order, as rows of cells (header row dropped).
func featureTables(t *testing.T) [][][]string {
	t.Helper()
	data, err := features.FS.ReadFile("stars.feature")
	require.NoError(t, err)
	var tables [][][]string
	var cur [][]string
	inFirst := false
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "Scenario:") {
			if inFirst {
				break
			}
			inFirst = true
		}
		if !inFirst {
			continue
		}
		if strings.HasPrefix(line, "|") {
			var cells []string
			for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			cur = append(cur, cells)
			continue
		}
		if cur != nil {
			tables = append(tables, cur[1:])
			cur = nil
		}
	}
	return tables
}

func TestExpectedStarsMatchFeatureTables(t *testing.T) {
	stars := defaultParts(t)[2]
	tables := featureTables(t)
	require.Len(t, tables, len(stars.Steps), "one hand table per stars step")
	for i, st := range stars.Steps {
		t.Run(st.Name, func(t *testing.T) {
			m, err := Expected(&stars, manifests.FS, i)
			require.NoError(t, err)
			for _, row := range tables[i] {
				for j, col := range []string{"client", "frontend", "backend"} {
					assert.Equal(t, row[j+1], m.Get(row[0], col), "%s -> %s", row[0], col)
				}
			}
		})
	}
}

func TestExpectedShop(t *testing.T) {
	shop := defaultParts(t)[1]
	tests := []struct {
		step int
		from string
		to   string
		want string
	}{
		{0, "stranger", "db", Absent},
		{0, "shopper", "db", Yes},
		{1, "stranger", "db", Yes},
		{2, "stranger", "db", No},
		{2, "shopper", "db", No},
		{2, "orders", "db", Yes},
		{2, "inventory", "db", Yes},
		{2, "shopper", "orders", Yes},
	}
	for _, tt := range tests {
		t.Run(shop.Steps[tt.step].Name+"/"+tt.from+"->"+tt.to, func(t *testing.T) {
			m, err := Expected(&shop, manifests.FS, tt.step)
			require.NoError(t, err)
			assert.Equal(t, tt.want, m.Get(tt.from, tt.to))
		})
	}
}

func TestLoadPartsBadInput(t *testing.T) {
	part := func(body string) fstest.MapFS {
		return fstest.MapFS{"p.yaml": {Data: []byte("name: x\ntitle: X\n" + body)}}
	}
	tests := []struct {
		name  string
		fsys  fstest.MapFS
		errIs string
	}{
		{"no part at all", fstest.MapFS{"obj.yaml": {Data: []byte("kind: Namespace\n")}}, "no part found"},
		{"unknown check", part("steps:\n  - {name: a, check: dance}\n"), `unknown check "dance"`},
		{"missing file", part("steps:\n  - {name: a, apply: [nope.yaml]}\n"), "read nope.yaml"},
		{"bad picture", part("picture: movie\nsteps:\n  - {name: a}\n"), `picture "movie"`},
		{"duplicate step", part("steps:\n  - {name: a}\n  - {name: a}\n"), "unique name"},
		{"unknown field", part("steps:\n  - {name: a, aply: [x]}\n"), "unknown field"},
		{"matrix without workload", part("rows: [ghost]\nsteps:\n  - {name: a}\n"), `workload "ghost"`},
		{"figure not svg", part("steps:\n  - {name: a, figure: chart.png}\n"), "figure chart.png: want an .svg file"},
		{"figure missing", part("steps:\n  - {name: a, figure: chart.svg}\n"), "figure chart.svg: open chart.svg: file does not exist"},
		{"figure not an svg document", withFile(part("steps:\n  - {name: a, figure: chart.svg}\n"), "chart.svg", "<html><body>chart</body></html>"), "figure chart.svg: root element <html>"},
		{"figure not xml", withFile(part("steps:\n  - {name: a, figure: chart.svg}\n"), "chart.svg", "PNG"), "figure chart.svg: not an SVG document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadParts(tt.fsys, manifests.FS)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.errIs)
		})
	}
}

func withFile(fsys fstest.MapFS, name, data string) fstest.MapFS {
	fsys[name] = &fstest.MapFile{Data: []byte(data)}
	return fsys
}

func TestLoadPartsFigure(t *testing.T) {
	svg := `<?xml version="1.0"?><!-- a chart --><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>`
	fsys := fstest.MapFS{
		"p.yaml":    {Data: []byte("name: x\ntitle: X\nsteps:\n  - {name: a}\n  - {name: chart, figure: chart.svg}\n")},
		"chart.svg": {Data: []byte(svg)},
	}
	parts, err := LoadParts(fsys, manifests.FS)
	require.NoError(t, err)
	assert.Empty(t, parts[0].Steps[0].FigureSVG)
	assert.Equal(t, svg, string(parts[0].Steps[1].FigureSVG))
	assert.Empty(t, parts[0].Steps[1].Kubectl(), "a figure step runs nothing")
	var b strings.Builder
	require.NoError(t, WriteList(&b, parts))
	assert.Contains(t, b.String(), "(figure chart.svg)")
}

// Part 1 closes on the chart of the recorded `starlab bench services` run, the same file as the one
// docs/BENCHMARKS.md shows (re-recording the run replaces both).
func TestPartOneClosesWithTheRecordedBenchChart(t *testing.T) {
	p := defaultParts(t)[0]
	last := p.Steps[len(p.Steps)-1]
	assert.Equal(t, "bench-services.svg", last.Figure)
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", benchChart))
	require.NoError(t, err)
	assert.Equal(t, string(docs), string(last.FigureSVG), "internal/workshop/parts/bench-services.svg differs from docs/%s: copy the recorded chart", benchChart)
	assert.Contains(t, string(last.FigureSVG), "kube-proxy-iptables", "the chart compares with kube-proxy")
}

// benchChart is the recorded chart in docs/.
const benchChart = "bench-services-2026-12-03-1638.svg"

func TestLoadPartsOwnStepFromManifests(t *testing.T) {
	fsys := fstest.MapFS{"9-mine.yaml": {Data: []byte("name: mine\ntitle: Mine\nsteps:\n  - {name: deny, apply: [stars/policies/1-default-deny.yaml]}\n")}}
	parts, err := LoadParts(fsys, manifests.FS)
	require.NoError(t, err)
	require.Len(t, parts, 1)
	assert.Equal(t, PictureMap, parts[0].Picture)
	assert.Contains(t, parts[0].Steps[0].Objects[0].YAML, "default-deny")
}
