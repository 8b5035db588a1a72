// Package tui is `starlab demo --tui`: the presenter's steps in a terminal (bubbletea), for a
// presenter without a browser. It drives the same workshop.Runner as the presenter page and shows
// the same facts: the step's narrative and kubectl line, its phase with a running timer, the
// expected and probed matrices, what differs, the checks, and (f) the step's flows.
package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/workshop"
)

// Stepper is what the TUI drives: workshop.Runner.
type Stepper interface {
	Parts() []workshop.Part
	Position() (part, step int, busy bool, res workshop.StepResult)
	Start(ctx context.Context) (workshop.StepResult, error)
	Next(ctx context.Context) (workshop.StepResult, error)
	Back(ctx context.Context) (workshop.StepResult, error)
	Reset(ctx context.Context) (workshop.StepResult, error)
}

// refresh is how often the screen is redrawn while nothing happens (the phase timer).
const refresh = 200 * time.Millisecond

// maxFlowLines bounds the flows panel.
const maxFlowLines = 12

// Model is the bubbletea model of the walk.
type Model struct {
	ctx       context.Context
	runner    Stepper
	width     int
	showFlows bool
	notice    string // the last key's refusal (busy, first or last step)
	now       time.Time
}

// New returns the model over runner; the first step starts with the program.
func New(ctx context.Context, runner Stepper) Model {
	return Model{ctx: ctx, runner: runner, width: 100, now: time.Now()}
}

type tickMsg time.Time

// actionMsg is the end of a key's step: its error, when the runner refused or failed it.
type actionMsg struct{ err error }

func tick() tea.Cmd { return tea.Tick(refresh, func(t time.Time) tea.Msg { return tickMsg(t) }) }

func (m Model) act(f func(context.Context) (workshop.StepResult, error)) tea.Cmd {
	return func() tea.Msg {
		_, err := f(m.ctx)
		return actionMsg{err: err}
	}
}

// Init starts the first step and the redraw timer.
func (m Model) Init() tea.Cmd { return tea.Batch(m.act(m.runner.Start), tick()) }

// Update handles keys (→/l/n next, ←/h/p back, r reset, f flows, q quit), the end of a step and
// the timer.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case tickMsg:
		m.now = time.Time(msg)
		return m, tick()
	case actionMsg:
		m.notice = ""
		switch {
		case errors.Is(msg.err, workshop.ErrEnd), errors.Is(msg.err, workshop.ErrStart), errors.Is(msg.err, workshop.ErrBusy):
			m.notice = msg.err.Error()
		}
	case tea.KeyMsg:
		var f func(context.Context) (workshop.StepResult, error)
		switch msg.String() {
		case "q", "ctrl+c":
			return m, tea.Quit
		case "f":
			m.showFlows = !m.showFlows
			return m, nil
		case "right", "l", "n", " ":
			f = m.runner.Next
		case "left", "h", "p":
			f = m.runner.Back
		case "r":
			f = m.runner.Reset
		default:
			return m, nil
		}
		if _, _, busy, _ := m.runner.Position(); busy {
			m.notice = workshop.ErrBusy.Error()
			return m, nil
		}
		m.notice = ""
		return m, m.act(f)
	}
	return m, nil
}

// View draws the current step.
func (m Model) View() string {
	part, step, busy, res := m.runner.Position()
	return Render(m.runner.Parts(), Screen{Part: part, Step: step, Busy: busy, Result: res, ShowFlows: m.showFlows,
		Notice: m.notice, Now: m.now, Width: m.width})
}

// Screen is everything one frame shows.
type Screen struct {
	Part, Step int
	Busy       bool
	Result     workshop.StepResult
	ShowFlows  bool
	Notice     string
	Now        time.Time
	Width      int
}

var (
	titleStyle = lipgloss.NewStyle().Bold(true)
	dimStyle   = lipgloss.NewStyle().Faint(true)
	okStyle    = lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)
	badStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	busyStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("3")).Bold(true)
	cmdStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
)

// Render draws one frame as text (pure: the tests read it as a presenter would).
func Render(parts []workshop.Part, s Screen) string {
	var b strings.Builder
	width := max(s.Width, 40)
	if s.Step < 0 || len(parts) == 0 {
		b.WriteString(titleStyle.Render("Starlab workshop") + "\n\n" + busyStyle.Render("starting: cleaning the lab and applying the first step…") + "\n")
		return b.String()
	}
	p := parts[s.Part]
	st := p.Steps[s.Step]
	b.WriteString(titleStyle.Render(fmt.Sprintf("Part %d/%d: %s", s.Part+1, len(parts), p.Title)) +
		dimStyle.Render(fmt.Sprintf("   step %d/%d", s.Step+1, len(p.Steps))) + "\n")
	b.WriteString(titleStyle.Render(st.Title) + "\n")
	if st.Narrative != "" {
		b.WriteString(lipgloss.NewStyle().Width(width).Render(strings.TrimSpace(st.Narrative)) + "\n")
	}
	if line := st.Kubectl(); line != "" {
		b.WriteString(cmdStyle.Render("$ "+line) + "\n")
	}
	if st.Figure != "" {
		b.WriteString(dimStyle.Render("figure: "+st.Figure+" (drawn on the presenter page: starlab demo without --tui)") + "\n")
	}
	b.WriteString("\n" + phaseLine(s) + "\n")
	res := s.Result
	if !s.Busy {
		for _, c := range res.Checks {
			mark := okStyle.Render("ok  ")
			if !c.OK {
				mark = badStyle.Render("FAIL")
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", mark, c.Subject, c.Detail)
		}
		if res.Expected != nil && res.Probed != nil {
			b.WriteString("\n" + sideBySide("expected (oracle)", res.Expected.Text(), "probed", res.Probed.Text()))
		}
		for _, d := range res.Diffs {
			b.WriteString(badStyle.Render("  DIFF ") + d + "\n")
		}
		if res.Error != "" {
			b.WriteString(badStyle.Render("  ERROR ") + res.Error + "\n")
		}
		if s.ShowFlows {
			b.WriteString("\n" + flowLines(res.Flows))
		} else {
			b.WriteString(dimStyle.Render(fmt.Sprintf("\nflows: %d (f shows them)", len(res.Flows))) + "\n")
		}
	}
	if s.Notice != "" {
		b.WriteString("\n" + busyStyle.Render(s.Notice) + "\n")
	}
	b.WriteString("\n" + dimStyle.Render("→ next   ← back (undo)   r reset part   f flows   q quit") + "\n")
	return b.String()
}

// phaseLine says where the step is, with a running timer while it runs and its times when done.
func phaseLine(s Screen) string {
	res := s.Result
	if s.Busy {
		since := res.PhaseStarted
		if since.IsZero() {
			since = res.Started
		}
		el := s.Now.Sub(since)
		if el < 0 {
			el = 0
		}
		return busyStyle.Render(fmt.Sprintf("%s… %.1f s", res.Phase, el.Seconds()))
	}
	times := fmt.Sprintf("programmed %.0f ms, probed %.0f ms, total %.0f ms", res.ProgrammedMs, res.ProbedMs, res.TotalMs)
	switch res.Phase {
	case workshop.PhaseDone:
		return okStyle.Render("done") + "  " + dimStyle.Render(times)
	case workshop.PhaseFailed:
		return badStyle.Render("differs") + "  " + dimStyle.Render(times) + "  (→ goes on, ← goes back)"
	}
	return string(res.Phase)
}

// sideBySide puts two titled text blocks next to each other.
func sideBySide(lt, l, rt, r string) string {
	left := titleStyle.Render(lt) + "\n" + strings.TrimRight(l, "\n")
	right := titleStyle.Render(rt) + "\n" + strings.TrimRight(r, "\n")
	return lipgloss.JoinHorizontal(lipgloss.Top, left, "    ", right) + "\n"
}

func flowLines(flows []workshop.FlowView) string {
	var b strings.Builder
	b.WriteString(titleStyle.Render(fmt.Sprintf("flows (%d, newest last)", len(flows))) + "\n")
	if len(flows) > maxFlowLines {
		flows = flows[len(flows)-maxFlowLines:]
	}
	for _, f := range flows {
		verdict := okStyle.Render(f.Verdict)
		if f.Verdict != string(flow.VerdictForwarded) {
			verdict = badStyle.Render(f.Verdict)
		}
		line := fmt.Sprintf("  %s %s -> %s %s %s", f.Time.Format("15:04:05"), f.From, f.To, f.Port, verdict)
		if f.DropReason != "" {
			line += " " + f.DropReason
		}
		if f.Policy != "" {
			line += dimStyle.Render(" by " + f.Policy)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Run plays the walk in the terminal until the presenter quits or ctx ends.
func Run(ctx context.Context, runner Stepper) error {
	p := tea.NewProgram(New(ctx, runner), tea.WithAltScreen(), tea.WithContext(ctx))
	if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("terminal UI: %w", err)
	}
	return nil
}
