package workshop

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

func newTestServer(t *testing.T, fake *fakeCluster) (*httptest.Server, *Runner) {
	t.Helper()
	r := newTestRunner(t, fake)
	_, err := r.Start(context.Background())
	require.NoError(t, err)
	srv := httptest.NewServer(NewServer(context.Background(), r, fake, r.log))
	t.Cleanup(srv.Close)
	return srv, r
}

func getState(t *testing.T, base string) StateView {
	t.Helper()
	var v StateView
	resp, err := http.Get(base + PathState)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

func TestServerPages(t *testing.T) {
	srv, _ := newTestServer(t, newFake())
	tests := []struct {
		method, path string
		code         int
		has          string
	}{
		{"GET", "/", 200, `<script src="app.js">`},
		{"GET", "/app.js", 200, "highlightYAML"},
		{"GET", "/app.css", 200, "font"},
		{"GET", PathScript, 200, `"kubectl":"kubectl apply -f manifests/stars/policies/1-default-deny.yaml"`},
		{"GET", PathState, 200, `"stepName":"no-kube-proxy"`},
		{"GET", PathGraph, 200, `"stranger/stranger"`},
		{"GET", PathFlows, 200, `"dropReason":"POLICY_DENIED"`},
		{"GET", PathFigure + "/0/3", 200, `<svg xmlns="http://www.w3.org/2000/svg"`},
		{"GET", PathFigure + "/0/0", 404, "step datapath/no-kube-proxy has no figure"},
		{"GET", PathFigure + "/7/0", 404, "no step 7/0"},
		{"GET", PathFigure + "/0/x", 404, "no step 0/x"},
		{"GET", PathNext, 404, ""},
		{"POST", PathState, 405, ""},
		{"GET", "/nope.js", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tt.code, resp.StatusCode, string(body))
			assert.Contains(t, string(body), tt.has)
		})
	}
}

func TestServerFigureIsTheStepsSVG(t *testing.T) {
	srv, r := newTestServer(t, newFake())
	resp, err := http.Get(srv.URL + PathFigure + "/0/3")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "image/svg+xml", resp.Header.Get("Content-Type"))
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", "a figure opened directly runs no script")
	assert.Equal(t, r.Parts()[0].Steps[3].FigureSVG, body)

	var sv ScriptView
	sresp, err := http.Get(srv.URL + PathScript)
	require.NoError(t, err)
	defer sresp.Body.Close()
	require.NoError(t, json.NewDecoder(sresp.Body).Decode(&sv))
	assert.Equal(t, "bench-services.svg", sv.Parts[0].Steps[3].Figure, "the page learns which step has a figure")
	assert.Empty(t, sv.Parts[0].Steps[2].Figure)
}

func TestServerKeys(t *testing.T) {
	fake := newFake()
	srv, _ := newTestServer(t, fake)
	post := func(path string) int {
		resp, err := http.Post(srv.URL+path, "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	idle := func() StateView {
		var v StateView
		require.Eventually(t, func() bool { v = getState(t, srv.URL); return !v.Busy }, waitFor, tick)
		return v
	}
	require.Equal(t, http.StatusAccepted, post(PathNext))
	v := idle()
	assert.Equal(t, "no-kube-svc", v.Result.StepName)

	require.Equal(t, http.StatusAccepted, post(PathBack))
	v = idle()
	assert.Equal(t, "no-kube-proxy", v.Result.StepName)
	require.Equal(t, http.StatusAccepted, post(PathBack))
	v = idle()
	assert.Contains(t, v.Error, "first step", "the refusal is shown on the page")

	for range 4 { // to shop/who-talks-to-whom
		require.Equal(t, http.StatusAccepted, post(PathNext))
		idle()
	}
	fake.block = make(chan struct{}) // shop/stranger applies objects: it blocks in programming
	require.Equal(t, http.StatusAccepted, post(PathNext))
	require.Eventually(t, func() bool { return getState(t, srv.URL).Result.Phase == PhaseProgramming }, waitFor, tick)
	assert.Equal(t, http.StatusConflict, post(PathNext), "busy while programming")
	close(fake.block)
	v = idle()
	assert.Equal(t, "stranger", v.Result.StepName)
	assert.Equal(t, Yes, v.Result.Probed.Get("stranger", "db"))
	assert.True(t, strings.HasPrefix(v.Result.Flows[0].Policy, "stars/"), "flows carry the deciding policy")
}
