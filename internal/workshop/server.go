package workshop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/starlab-dev/starlab/internal/workshop/ui"
)

// API paths of the presenter server.
const (
	PathScript = "/api/script" // GET: the parts and steps (ScriptView)
	PathState  = "/api/state"  // GET: where the presenter is (StateView)
	PathNext   = "/api/next"   // POST: → (202; 409 while a step runs)
	PathBack   = "/api/back"   // POST: ←
	PathReset  = "/api/reset"  // POST: r
	PathGraph  = "/api/graph"  // GET: the observer's map of the current part
	PathFlows  = "/api/flows"  // GET: the flows since the last key press
	PathFigure = "/api/figure" // GET /api/figure/{part}/{step}: the step's figure (image/svg+xml)
)

// StateView is GET /api/state.
type StateView struct {
	Part   int        `json:"part"`
	Step   int        `json:"step"`
	Busy   bool       `json:"busy"`
	Now    time.Time  `json:"now"`
	Result StepResult `json:"result"`
	// Error is the last key press's refusal (busy, first or last step) or failure.
	Error string `json:"error,omitempty"`
}

// ScriptView is GET /api/script: the parts with each step's kubectl lines.
type ScriptView struct {
	Parts []PartView `json:"parts"`
}

// PartView is one part in ScriptView.
type PartView struct {
	Part
	Steps []StepView `json:"steps"`
}

// StepView is one step with its kubectl lines.
type StepView struct {
	Step
	Kubectl string `json:"kubectl"`
	Undo    string `json:"undo,omitempty"`
}

// Server serves the presenter page and its API over a Runner.
type Server struct {
	ctx     context.Context // bounds the steps the page starts
	runner  *Runner
	cluster Cluster
	log     *slog.Logger
	mux     *http.ServeMux

	mu      sync.Mutex
	lastErr string // the last key press's refusal or failure, until the next key press
}

// NewServer returns the presenter server; ctx bounds the steps key presses start.
func NewServer(ctx context.Context, r *Runner, c Cluster, log *slog.Logger) *Server {
	s := &Server{ctx: ctx, runner: r, cluster: c, log: log, mux: http.NewServeMux()}
	s.mux.Handle("GET /", http.FileServerFS(ui.FS))
	s.mux.HandleFunc("GET "+PathScript, s.script)
	s.mux.HandleFunc("GET "+PathState, s.state)
	s.mux.HandleFunc("POST "+PathNext, s.key(r.Next))
	s.mux.HandleFunc("POST "+PathBack, s.key(r.Back))
	s.mux.HandleFunc("POST "+PathReset, s.key(r.Reset))
	s.mux.HandleFunc("GET "+PathGraph, s.graph)
	s.mux.HandleFunc("GET "+PathFlows, s.flows)
	s.mux.HandleFunc("GET "+PathFigure+"/{part}/{step}", s.figure)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Script returns the ScriptView of parts.
func Script(parts []Part) ScriptView {
	var v ScriptView
	for _, p := range parts {
		pv := PartView{Part: p}
		for _, st := range p.Steps {
			pv.Steps = append(pv.Steps, StepView{Step: st, Kubectl: st.Kubectl(), Undo: st.UndoKubectl()})
		}
		v.Parts = append(v.Parts, pv)
	}
	return v
}

func (s *Server) script(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Script(s.runner.Parts()))
}

func (s *Server) state(w http.ResponseWriter, _ *http.Request) {
	p, st, busy, res := s.runner.Position()
	s.mu.Lock()
	v := StateView{Part: p, Step: st, Busy: busy, Now: time.Now(), Result: res, Error: s.lastErr}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) setErr(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = e
}

// key starts a key press in the background: 202 when it started, 409 while a step runs.
func (s *Server) key(do func(context.Context) (StepResult, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if _, _, busy, _ := s.runner.Position(); busy {
			writeJSON(w, http.StatusConflict, map[string]string{"error": ErrBusy.Error()})
			return
		}
		s.setErr("")
		done := make(chan error, 1)
		go func() {
			_, err := do(s.ctx)
			if err != nil {
				s.setErr(err.Error())
				if !errors.Is(err, ErrEnd) && !errors.Is(err, ErrStart) && !errors.Is(err, ErrBusy) {
					s.log.Warn("step failed", "err", err)
				}
			}
			done <- err
		}()
		// Answer once the runner has taken the key (busy with its step) or refused it, so the page's
		// next poll never shows the state from before the key.
		wait := time.NewTimer(2 * time.Second)
		defer wait.Stop()
		for {
			if _, _, busy, _ := s.runner.Position(); busy {
				writeJSON(w, http.StatusAccepted, map[string]string{"status": "started"})
				return
			}
			select {
			case err := <-done:
				if errors.Is(err, ErrBusy) {
					writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
					return
				}
				writeJSON(w, http.StatusAccepted, map[string]string{"status": "done"})
				return
			case <-wait.C:
				writeJSON(w, http.StatusAccepted, map[string]string{"status": "started"})
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
}

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	p, _, _, _ := s.runner.Position()
	g, err := s.cluster.Graph(r.Context(), s.runner.Parts()[p].Namespaces)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "observer graph: " + err.Error() + " (is the observer up? starlab status)"})
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	p, _, _, res := s.runner.Position()
	since := res.Started.Add(-flowsSlack)
	fl, err := s.cluster.Flows(r.Context(), since, s.runner.Parts()[p].Namespaces)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "observer flows: " + err.Error() + " (is the observer up? starlab status)"})
		return
	}
	out := ViewFlows(fl)
	if out == nil {
		out = []FlowView{}
	}
	writeJSON(w, http.StatusOK, out)
}

// figure serves a step's figure, for the page's <img> (an SVG shown as an image runs no script; the
// policy keeps it so when it is opened directly).
func (s *Server) figure(w http.ResponseWriter, r *http.Request) {
	parts := s.runner.Parts()
	p, errP := strconv.Atoi(r.PathValue("part"))
	st, errS := strconv.Atoi(r.PathValue("step"))
	if errP != nil || errS != nil || p < 0 || p >= len(parts) || st < 0 || st >= len(parts[p].Steps) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no step %s/%s: want /api/figure/<part index>/<step index> of %s", r.PathValue("part"), r.PathValue("step"), PathScript)})
		return
	}
	step := parts[p].Steps[st]
	if len(step.FigureSVG) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("step %s/%s has no figure", parts[p].Name, step.Name)})
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(step.FigureSVG)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
