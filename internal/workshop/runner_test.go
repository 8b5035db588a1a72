package workshop

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/manifests"
)

func newTestRunner(t *testing.T, c Cluster) *Runner {
	t.Helper()
	return NewRunner(defaultParts(t), manifests.FS, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestRunnerWalksEveryStepInOrder(t *testing.T) {
	fake := newFake()
	r := newTestRunner(t, fake)
	ctx := context.Background()
	res, err := r.Start(ctx)
	require.NoError(t, err)
	got := []string{res.PartName + "/" + res.StepName}
	for {
		res, err = r.Next(ctx)
		if err != nil {
			require.ErrorIs(t, err, ErrEnd)
			break
		}
		require.True(t, res.OK(), "%s/%s: %v %s", res.PartName, res.StepName, res.Diffs, res.Error)
		got = append(got, res.PartName+"/"+res.StepName)
	}
	assert.Equal(t, []string{
		"datapath/no-kube-proxy", "datapath/no-kube-svc", "datapath/observer", "datapath/bench",
		"shop/who-talks-to-whom", "shop/stranger", "shop/db-only-apis",
		"stars/no-policy", "stars/default-deny", "stars/allow-ui", "stars/backend-policy", "stars/frontend-policy",
	}, got)
	p, s, busy, last := r.Position()
	assert.Equal(t, []any{2, 4, false}, []any{p, s, busy})
	assert.Equal(t, "frontend-policy", last.StepName, "a refused → keeps the last result")
	assert.Len(t, fake.ids(), 2+1+6, "stranger namespace and deployment, shop policy, six stars policies")
	assert.NotEmpty(t, fake.waited, "every applied step waited for programming")
}

func TestRunnerBackUndoesTheStep(t *testing.T) {
	fake := newFake()
	r := newTestRunner(t, fake)
	ctx := context.Background()
	_, err := r.Start(ctx)
	require.NoError(t, err)
	var atAllowUI StepResult
	var idsAtAllowUI []string
	for {
		res, err := r.Next(ctx)
		require.NoError(t, err)
		if res.StepName == "allow-ui" {
			atAllowUI, idsAtAllowUI = res, fake.ids()
		}
		if res.StepName == "backend-policy" {
			break
		}
	}
	back, err := r.Back(ctx)
	require.NoError(t, err)
	assert.Equal(t, "allow-ui", back.StepName)
	assert.True(t, back.OK(), back.Diffs)
	assert.ElementsMatch(t, idsAtAllowUI, fake.ids(), "backend-policy deleted, nothing else")
	assert.Equal(t, atAllowUI.Expected, back.Expected)
	assert.Equal(t, atAllowUI.Probed, back.Probed, "the matrix is restored")
	assert.Positive(t, back.ProgrammedMs+1, "undo waited for programming")

	reset, err := r.Reset(ctx)
	require.NoError(t, err)
	assert.Equal(t, "no-policy", reset.StepName)
	assert.Equal(t, Yes, reset.Probed.Get("client", "backend"))
	for _, id := range fake.ids() {
		assert.NotContains(t, id, "NetworkPolicy stars/", "reset undoes the part's policies")
	}
}

func TestRunnerBackAcrossParts(t *testing.T) {
	fake := newFake()
	r := newTestRunner(t, fake)
	ctx := context.Background()
	_, err := r.Start(ctx)
	require.NoError(t, err)
	_, err = r.Back(ctx)
	require.ErrorIs(t, err, ErrStart)
	for range 4 {
		_, err = r.Next(ctx)
		require.NoError(t, err)
	}
	res, err := r.Back(ctx)
	require.NoError(t, err)
	assert.Equal(t, "datapath/bench", res.PartName+"/"+res.StepName)
}

func TestRunnerShowsWhatDiffers(t *testing.T) {
	fake := newFake()
	fake.wrong["client->backend.stars:6379"] = true
	r := newTestRunner(t, fake)
	ctx := context.Background()
	_, err := r.Start(ctx)
	require.NoError(t, err)
	var res StepResult
	for res.StepName != "default-deny" {
		res, err = r.Next(ctx)
		require.NoError(t, err)
	}
	assert.Equal(t, PhaseFailed, res.Phase)
	assert.Equal(t, []string{"client -> backend: expected no, probed yes"}, res.Diffs)
	next, err := r.Next(ctx)
	require.NoError(t, err, "a failed step still lets the presenter go on")
	assert.Equal(t, "allow-ui", next.StepName)
}

func TestRunnerRefusesWhileProgramming(t *testing.T) {
	fake := newFake()
	r := newTestRunner(t, fake)
	ctx := context.Background()
	_, err := r.Start(ctx)
	require.NoError(t, err)
	for range 7 { // to stars/no-policy
		_, err = r.Next(ctx)
		require.NoError(t, err)
	}
	fake.block = make(chan struct{})
	done := make(chan StepResult)
	go func() {
		res, _ := r.Next(ctx)
		done <- res
	}()
	require.Eventually(t, func() bool { _, _, busy, res := r.Position(); return busy && res.Phase == PhaseProgramming }, waitFor, tick)
	_, err = r.Next(ctx)
	require.ErrorIs(t, err, ErrBusy, "never advances before the policy is programmed")
	_, s, _, _ := r.Position()
	assert.Equal(t, 0, s, "still on no-policy while programming")
	close(fake.block)
	res := <-done
	assert.Equal(t, "default-deny", res.StepName)
	assert.True(t, res.OK())
}
