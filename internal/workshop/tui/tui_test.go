package tui

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/workshop"
)

// script is a Stepper over two steps whose results are given: it records the keys' calls.
type script struct {
	mu      sync.Mutex
	parts   []workshop.Part
	results []workshop.StepResult
	at      int
	calls   []string
}

func (s *script) Parts() []workshop.Part { return s.parts }
func (s *script) Position() (int, int, bool, workshop.StepResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at < 0 {
		return 0, -1, false, workshop.StepResult{}
	}
	r := s.results[s.at]
	return r.Part, r.Step, false, r
}

func (s *script) move(name string, to int, err error) (workshop.StepResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, name)
	if err != nil {
		return s.results[s.at], err
	}
	s.at = to
	return s.results[s.at], nil
}

func (s *script) Start(context.Context) (workshop.StepResult, error) { return s.move("start", 0, nil) }
func (s *script) Next(context.Context) (workshop.StepResult, error) {
	if s.at+1 >= len(s.results) {
		return s.move("next", s.at, workshop.ErrEnd)
	}
	return s.move("next", s.at+1, nil)
}
func (s *script) Back(context.Context) (workshop.StepResult, error) {
	if s.at == 0 {
		return s.move("back", 0, workshop.ErrStart)
	}
	return s.move("back", s.at-1, nil)
}
func (s *script) Reset(context.Context) (workshop.StepResult, error) { return s.move("reset", 0, nil) }

func twoSteps() *script {
	parts := []workshop.Part{{Name: "stars", Title: "The stars demo", Steps: []workshop.Step{
		{Name: "open", Title: "Everything open", Narrative: "No policy yet: every pod reaches every other."},
		{Name: "default-deny", Title: "Default deny", Narrative: "Deny all ingress.", Apply: []string{"stars/policies/default-deny.yaml"}},
	}}}
	exp := workshop.NewMatrix([]string{"client", "frontend"}, []string{"frontend", "backend"}, workshop.Yes)
	probed := workshop.NewMatrix([]string{"client", "frontend"}, []string{"frontend", "backend"}, workshop.Yes)
	denyExp := workshop.NewMatrix([]string{"client", "frontend"}, []string{"frontend", "backend"}, workshop.No)
	denyProbed := workshop.NewMatrix([]string{"client", "frontend"}, []string{"frontend", "backend"}, workshop.No)
	denyProbed.Cells[0][1] = workshop.Yes
	return &script{parts: parts, at: -1, results: []workshop.StepResult{
		{Part: 0, Step: 0, Phase: workshop.PhaseDone, Expected: exp, Probed: probed, ProgrammedMs: 120, TotalMs: 900,
			Flows: []workshop.FlowView{{Time: time.Unix(0, 0), Verdict: "FORWARDED", From: "client/client", To: "stars/frontend", Port: "TCP/80"}}},
		{Part: 0, Step: 1, Phase: workshop.PhaseFailed, Expected: denyExp, Probed: denyProbed,
			Diffs: denyExp.Diff(denyProbed),
			Flows: []workshop.FlowView{{Time: time.Unix(0, 0), Verdict: "DROPPED", DropReason: "POLICY_DENIED", From: "client/client", To: "stars/backend", Port: "TCP/6379", Policy: "stars/default-deny"}}},
	}}
}

// press feeds one key to the model and runs the command it returns (the step) to its message.
func press(t *testing.T, m tea.Model, key tea.KeyMsg) tea.Model {
	t.Helper()
	m, cmd := m.Update(key)
	if cmd != nil {
		m, _ = m.Update(cmd())
	}
	return m
}

func TestKeysDriveTheRunnerAndTheScreenShowsTheStep(t *testing.T) {
	s := twoSteps()
	var m tea.Model = New(context.Background(), s)
	assert.Contains(t, m.View(), "starting")

	// Init starts the first step (its batch holds the start and the timer: run the start).
	_, err := s.Start(context.Background())
	require.NoError(t, err)
	v := m.View()
	assert.Contains(t, v, "Part 1/1: The stars demo")
	assert.Contains(t, v, "Everything open")
	assert.Contains(t, v, "expected (oracle)")
	assert.Contains(t, v, "done")
	assert.Contains(t, v, "flows: 1 (f shows them)")

	m = press(t, m, tea.KeyMsg{Type: tea.KeyRight})
	v = m.View()
	assert.Contains(t, v, "Default deny")
	assert.Contains(t, v, "$ kubectl apply -f manifests/stars/policies/default-deny.yaml")
	assert.Contains(t, v, "differs")
	assert.Contains(t, v, "DIFF client -> backend: expected no, probed yes")

	m = press(t, m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{'f'}})
	v = m.View()
	assert.Contains(t, v, "client/client -> stars/backend TCP/6379")
	assert.Contains(t, v, "POLICY_DENIED")
	assert.Contains(t, v, "by stars/default-deny")

	m = press(t, m, tea.KeyMsg{Type: tea.KeyRight})
	assert.Contains(t, m.View(), workshop.ErrEnd.Error(), "the last step says how to go on")

	m = press(t, m, tea.KeyMsg{Type: tea.KeyLeft})
	assert.Contains(t, m.View(), "Everything open")
	m = press(t, m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{'r'}})
	assert.Equal(t, []string{"start", "next", "next", "back", "reset"}, s.calls)

	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{'q'}})
	require.NotNil(t, cmd)
	assert.IsType(t, tea.QuitMsg{}, cmd())
}

func TestRunningStepShowsItsPhaseAndTimer(t *testing.T) {
	parts := twoSteps().parts
	start := time.Unix(1000, 0)
	frame := Render(parts, Screen{Part: 0, Step: 1, Busy: true, Now: start.Add(1500 * time.Millisecond), Width: 80,
		Result: workshop.StepResult{Phase: workshop.PhaseProgramming, Started: start, PhaseStarted: start}})
	assert.Contains(t, frame, "programming… 1.5 s")
	assert.NotContains(t, frame, "expected (oracle)", "a running step shows no stale matrix")
	assert.True(t, strings.Contains(frame, "→ next"))
}
