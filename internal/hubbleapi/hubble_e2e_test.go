//go:build e2e

package hubbleapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/hubbleapi"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
	"github.com/starlab-dev/starlab/internal/repobin"
)

// hubbleFlow is the part of `hubble observe -o json` lines the test reads.
type hubbleFlow struct {
	Flow struct {
		Verdict        string `json:"verdict"`
		DropReasonDesc string `json:"drop_reason_desc"`
		Source         struct {
			Namespace string `json:"namespace"`
			PodName   string `json:"pod_name"`
		} `json:"source"`
		Destination struct {
			Namespace string `json:"namespace"`
			PodName   string `json:"pod_name"`
		} `json:"destination"`
		IngressDeniedBy []struct {
			Name string `json:"name"`
		} `json:"ingress_denied_by"`
	} `json:"flow"`
}

// TestRealHubbleCLIAgainstTheLab runs the real `hubble` CLI against the lab's observer (its Hubble
// gRPC port, port-forwarded): `hubble status` reports every node, `hubble observe` returns the stars
// probes' flows as JSON, and --verdict, --from-namespace, --to-pod and --print-policy-names filter and
// print as Hubble users expect. A deny policy on the stars backend makes the drops to look for.
func TestRealHubbleCLIAgainstTheLab(t *testing.T) {
	// bin/hubble, built by `make hubble` from github.com/cilium/cilium/hubble (module internal/hubblecli).
	hubble, err := repobin.Find("hubble", "STARLAB_HUBBLE", "hubble")
	require.NoError(t, err)
	name := os.Getenv("STARLAB_LAB")
	require.NotEmpty(t, name, "STARLAB_LAB is not set: name a running lab, or run `make test-e2e`")
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)

	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "hubble-e2e-deny-backend", Namespace: "stars"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "backend"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	_, err = cs.NetworkingV1().NetworkPolicies("stars").Create(ctx, deny, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.NetworkingV1().NetworkPolicies("stars").Delete(context.Background(), deny.Name, metav1.DeleteOptions{})
	})

	pod, err := observer.FindPod(ctx, cs, observer.DefaultNamespace)
	require.NoError(t, err)
	fw, err := portforward.Open(ctx, cfg, observer.DefaultNamespace, pod, hubbleapi.Port, 0)
	require.NoError(t, err)
	defer fw.Close()
	server := fmt.Sprintf("127.0.0.1:%d", fw.LocalPort())

	run := func(args ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		out, err := exec.CommandContext(cctx, hubble, append(args, "--server", server)...).CombinedOutput()
		require.NoError(t, err, "hubble %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	observe := func(args ...string) []hubbleFlow {
		t.Helper()
		out := run(append([]string{"observe", "-o", "json"}, args...)...)
		var fs []hubbleFlow
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var f hubbleFlow
			require.NoError(t, json.Unmarshal(sc.Bytes(), &f), "hubble -o json line: %s", sc.Text())
			fs = append(fs, f)
		}
		return fs
	}

	status := run("status")
	assert.Contains(t, status, "Healthcheck (via "+server+"): Ok")
	assert.Contains(t, status, fmt.Sprintf("Connected Nodes: %d/%d", len(nodes.Items), len(nodes.Items)))
	t.Logf("hubble status:\n%s", status)

	all := observe("--last", "100")
	require.NotEmpty(t, all)
	stars := 0
	for _, f := range all {
		if f.Flow.Source.Namespace == "stars" || f.Flow.Destination.Namespace == "stars" {
			stars++
		}
	}
	assert.Positive(t, stars, "the stars probes' flows are among the last 100")

	// The stars probes keep dialling the backend: its drops appear within seconds of the policy.
	var drops []hubbleFlow
	require.Eventually(t, func() bool {
		drops = observe("--last", "1000", "--verdict", "DROPPED", "--to-pod", "stars/backend")
		return len(drops) > 0
	}, 90*time.Second, 2*time.Second, "no DROPPED flow to stars/backend after the deny policy")
	for _, f := range drops {
		assert.Equal(t, "DROPPED", f.Flow.Verdict)
		assert.Equal(t, "stars", f.Flow.Destination.Namespace)
		assert.True(t, strings.HasPrefix(f.Flow.Destination.PodName, "backend"), f.Flow.Destination.PodName)
	}
	assert.Equal(t, "POLICY_DENIED", drops[len(drops)-1].Flow.DropReasonDesc)

	fromClient := observe("--last", "200", "--from-namespace", "client")
	require.NotEmpty(t, fromClient, "the stars client probes the frontend and the backend")
	for _, f := range fromClient {
		assert.Equal(t, "client", f.Flow.Source.Namespace)
	}

	compact := run("observe", "--last", "20", "--verdict", "DROPPED", "--to-pod", "stars/backend", "--print-policy-names")
	assert.Contains(t, compact, "DENIED BY "+deny.Name+" (NetworkPolicy)", "hubble -o compact --print-policy-names:\n%s", compact)
	t.Logf("hubble observe --print-policy-names:\n%s", compact)
}
