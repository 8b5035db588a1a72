package cli

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/oracle"
	"github.com/starlab-dev/starlab/manifests"
)

// starsDir copies the stars workloads and the first `steps` policy steps into a temporary directory.
func starsDir(t *testing.T, steps int) string {
	t.Helper()
	dir := t.TempDir()
	files, err := manifests.Files(manifests.StarsDir)
	require.NoError(t, err)
	copyEmbedded(t, dir, files)
	writePolicySteps(t, dir, steps)
	return dir
}

// writePolicySteps copies the first `steps` stars policy steps into dir.
func writePolicySteps(t *testing.T, dir string, steps int) {
	t.Helper()
	copyEmbedded(t, dir, manifests.StarsPolicySteps()[:steps])
}

// copyEmbedded copies embedded manifest files into dir under their base names.
func copyEmbedded(t *testing.T, dir string, files []string) {
	t.Helper()
	for _, f := range files {
		data, err := fs.ReadFile(manifests.FS, f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644))
	}
}

// run (observe_test.go) executes the starlab command line and returns stdout.

func TestExplainStarsStep4(t *testing.T) {
	dir := starsDir(t, 4)
	tests := []struct {
		name    string
		args    []string
		allowed bool
		want    []string
	}{
		{"client to frontend:80 is allowed by frontend-policy",
			[]string{"--from", "client/client", "--to", "stars/frontend", "--port", "80"}, true,
			[]string{"pod client/client -> pod stars/frontend TCP/80: ALLOWED", "allowed by stars/frontend-policy ingress rule 0"}},
		{"client to backend:6379 is denied by default deny",
			[]string{"--from", "client/client", "--to", "stars/backend", "--port", "6379"}, false,
			[]string{"pod client/client -> pod stars/backend TCP/6379: DENIED", "default deny: selected by ", "stars/backend-policy", "stars/default-deny",
				"no ingress rule allows from pod client/client on TCP/6379"}},
		{"through the backend Service",
			[]string{"--from", "client/client", "--to", "svc/stars/backend", "--port", "6379"}, false,
			[]string{"service stars/backend TCP/6379: DENIED", "backend pod stars/backend TCP/6379: denied", "default deny"}},
		{"frontend to backend:6379 is allowed by backend-policy",
			[]string{"--from", "stars/frontend", "--to", "stars/backend", "--port", "6379"}, true,
			[]string{"allowed by stars/backend-policy ingress rule 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append([]string{"explain", "-f", dir}, tt.args...)...)
			require.NoError(t, err)
			for _, w := range tt.want {
				assert.Contains(t, out, w)
			}

			out, err = run(t, append([]string{"explain", "-f", dir, "-o", "json"}, tt.args...)...)
			require.NoError(t, err)
			var v oracle.Verdict
			require.NoError(t, json.Unmarshal([]byte(out), &v))
			assert.Equal(t, tt.allowed, v.Allowed)
			if tt.allowed {
				assert.Equal(t, "stars/"+map[bool]string{true: "frontend-policy", false: "backend-policy"}[tt.args[3] == "stars/frontend"], v.Ingress.AllowedBy[0].Policy)
			} else {
				assert.True(t, v.Ingress.Enforced)
				assert.Subset(t, v.Ingress.SelectedBy, []string{"stars/default-deny", "stars/backend-policy"})
				assert.Empty(t, v.Ingress.AllowedBy)
			}

			out, err = run(t, append([]string{"explain", "-f", dir, "-o", "markdown"}, tt.args...)...)
			require.NoError(t, err)
			assert.Contains(t, out, "| to | direction | pod | verdict | selected by | reason |")
		})
	}
}

func TestPredictStars(t *testing.T) {
	dir := starsDir(t, 4)
	out, err := run(t, "predict", "-f", dir, "--port", "80", "-o", "json")
	require.NoError(t, err)
	var view predictView
	require.NoError(t, json.Unmarshal([]byte(out), &view))
	require.Len(t, view.Tables, 1)
	table := view.Tables[0]
	for _, c := range []struct {
		from, to string
		allowed  bool
	}{
		{"client/client", "stars/frontend", true},
		{"stars/backend", "stars/frontend", false},
		{"management-ui/management-ui", "stars/frontend", true},
		{"stars/frontend", "client/client", false},
	} {
		got, ok := table.Allowed(c.from, c.to)
		require.True(t, ok)
		assert.Equal(t, c.allowed, got, "%s -> %s", c.from, c.to)
	}

	out, err = run(t, "predict", "-f", dir)
	require.NoError(t, err)
	for _, port := range []string{"TCP/80", "TCP/6379", "TCP/9000", "TCP/9001"} {
		assert.Contains(t, out, port)
	}
	out, err = run(t, "predict", "-f", dir, "--port", "6379", "-o", "markdown")
	require.NoError(t, err)
	assert.Contains(t, out, "| TCP/6379 from \\ to | client/client | management-ui/management-ui | stars/backend | stars/frontend |")
}

// diffDirs writes the stars workloads, and the policy steps up to base and up to head, into three
// temporary directories.
func diffDirs(t *testing.T, baseSteps, headSteps int) (workloads, base, head string) {
	t.Helper()
	workloads = t.TempDir()
	files, err := manifests.Files(manifests.StarsDir)
	require.NoError(t, err)
	copyEmbedded(t, workloads, files)
	base, head = t.TempDir(), t.TempDir()
	writePolicySteps(t, base, baseSteps)
	writePolicySteps(t, head, headSteps)
	return workloads, base, head
}

func TestDiffStarsStep3To4(t *testing.T) {
	workloads, base, head := diffDirs(t, 3, 4)

	out, err := run(t, "diff", base, head, "-f", workloads)
	require.NoError(t, err)
	assert.Contains(t, out, "1 connection changed:")
	assert.Regexp(t, `client/client\s+stars/frontend\s+TCP/80\s+denied\s+allowed\s+allowed by stars/frontend-policy ingress rule 0`, out)

	out, err = run(t, "diff", base, head, "-f", workloads, "-o", "json")
	require.NoError(t, err)
	var view diffView
	require.NoError(t, json.Unmarshal([]byte(out), &view))
	require.Len(t, view.Changes, 1)
	assert.True(t, view.Changes[0].Opened)

	out, err = run(t, "diff", head, head, "-f", workloads, "-o", "markdown")
	require.NoError(t, err)
	assert.Equal(t, "No connectivity changes.\n", out)
}

func TestNetpolCommandsBadInput(t *testing.T) {
	stars := starsDir(t, 4)
	broken := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(broken, "bad.yaml"), []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: stars}\nspec:\n  podSelector: 3\n"), 0o644))
	orphan := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(orphan, "np.yaml"), []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: ghost}\nspec:\n  podSelector: {}\n"), 0o644))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"policy file that does not parse", []string{"explain", "-f", broken, "--from", "a/b", "--to", "c/d", "--port", "80"},
			[]string{filepath.Join(broken, "bad.yaml"), "document 1", "NetworkPolicy does not parse", "fix the YAML"}},
		{"unknown namespace", []string{"explain", "-f", stars, "--from", "nope/client", "--to", "stars/frontend", "--port", "80"},
			[]string{`--from "nope/client": namespace "nope" is not defined (namespaces: client, management-ui, stars)`}},
		{"unknown pod", []string{"explain", "-f", stars, "--from", "client/client", "--to", "stars/db", "--port", "80"},
			[]string{`--to "stars/db": no pod or service stars/db (pods in stars: backend, frontend; services: backend, frontend)`}},
		{"policy in an undefined namespace", []string{"predict", "-f", orphan, "--port", "80"},
			[]string{`networkpolicy ghost/deny: namespace "ghost" is not defined: add a Namespace object for it`}},
		{"missing directory", []string{"predict", "-f", filepath.Join(stars, "nope")},
			[]string{"read manifests", "pass a directory or file of Kubernetes YAML"}},
		{"missing flags", []string{"explain", "-f", stars, "--from", "client/client"},
			[]string{"explain needs --from, --to and --port"}},
		{"bad protocol", []string{"explain", "-f", stars, "--from", "client/client", "--to", "stars/frontend", "--port", "80", "--protocol", "ICMP"},
			[]string{`invalid --protocol "ICMP": use TCP, UDP or SCTP`}},
		{"predict without -f", []string{"predict"}, []string{"predict needs -f"}},
		{"diff with a broken HEAD", []string{"diff", stars, broken}, []string{"HEAD: ", "bad.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, tt.args...)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestDiffObservedFlowsMeetChanges: --observed lists the changes real traffic meets. The stars step 3
// -> 4 change (client -> frontend:80 opens) is met by the client's connections to frontend pods (named
// by their Deployment), not by replies, other ports or other pairs.
func TestDiffObservedFlowsMeetChanges(t *testing.T) {
	workloads, base, head := diffDirs(t, 3, 4)
	b, err := manifestOracle(workloads, base)
	require.NoError(t, err)
	h, err := manifestOracle(workloads, head)
	require.NoError(t, err)
	changes, err := oracle.Diff(b, h, nil)
	require.NoError(t, err)
	require.Len(t, changes, 1)

	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	ep := func(ns, pod, workload string) flow.Endpoint {
		e := flow.Endpoint{Namespace: ns, PodName: pod}
		if workload != "" {
			e.Workload = &flow.Workload{Name: workload, Kind: "Deployment"}
		}
		return e
	}
	client, frontend, backend := ep("client", "client-5d8f-x2", "client"), ep("stars", "frontend-67d5-wc", "frontend"), ep("stars", "backend-6c45-ch", "backend")
	tcp := func(port uint16) flow.L4 { return flow.L4{Protocol: flow.ProtoTCP, DestinationPort: port} }
	flows := []*flow.Flow{
		{Time: t0, Source: client, Destination: frontend, L4: tcp(80), Verdict: flow.VerdictDropped},
		{Time: t0.Add(2 * time.Second), Source: client, Destination: frontend, L4: tcp(80), Verdict: flow.VerdictDropped},
		{Time: t0.Add(3 * time.Second), Source: frontend, Destination: client, L4: tcp(80), IsReply: true},
		{Time: t0.Add(4 * time.Second), Source: client, Destination: frontend, L4: tcp(81)},
		{Time: t0.Add(5 * time.Second), Source: client, Destination: backend, L4: tcp(6379)},
	}
	got := matchObserved(changes, flows)
	require.Len(t, got, 1)
	assert.Equal(t, "client/client", got[0].From)
	assert.Equal(t, "stars/frontend", got[0].To)
	assert.Equal(t, 2, got[0].Flows)
	assert.Equal(t, t0.Add(2*time.Second), got[0].LastSeen)
	assert.Empty(t, matchObserved(changes, flows[2:]), "replies, other ports and unchanged pairs meet no change")
}
