package workshop

import (
	"bytes"
	"embed"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/manifests"
)

// DefaultParts holds the talk's three parts (parts/*.yaml) and the objects only they use.
//
//go:embed parts/*.yaml parts/*.svg
var DefaultParts embed.FS

// Pictures a part can show.
const (
	PictureMap   = "map"   // the observer's service map
	PictureStars = "stars" // the stars graph: the part's workloads, edges where probed reachable
)

// Part is one part of the talk: a story told in steps over one set of workloads.
type Part struct {
	Name       string   `json:"name"`
	Title      string   `json:"title"`
	Picture    string   `json:"picture"`
	Namespaces []string `json:"namespaces"`
	// Manifests are the directories (of the manifests FS) holding the part's workloads; the oracle
	// reads them with the objects of the applied steps.
	Manifests []string   `json:"manifests,omitempty"`
	Workloads []Workload `json:"workloads,omitempty"`
	Rows      []string   `json:"rows,omitempty"` // matrix sources (workload names)
	Cols      []string   `json:"cols,omitempty"` // matrix destinations (workloads with a service)
	Steps     []Step     `json:"steps"`
}

// Workload is one matrix row or column: a Deployment's single pod, probed from inside through the
// demo's /probe endpoint on ProbePort, reached as a destination through Service:Port.
type Workload struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Selector   string `json:"selector"`
	ProbePort  int    `json:"probePort"`
	Service    string `json:"service,omitempty"`
	Port       int32  `json:"port,omitempty"`
}

// Target is host:port a source dials to reach w.
func (w Workload) Target() string { return fmt.Sprintf("%s.%s:%d", w.Service, w.Namespace, w.Port) }

// Step is one key press of the presenter.
type Step struct {
	Name      string   `json:"name"`
	Title     string   `json:"title"`
	Narrative string   `json:"narrative"`
	Apply     []string `json:"apply,omitempty"`   // manifest files applied (and deleted by back)
	Check     string   `json:"check,omitempty"`   // a lab check instead of objects (see Checks)
	Command   string   `json:"command,omitempty"` // the shell line a check stands for
	// Figure is an SVG file of the parts directory the page shows in place of the part's picture
	// while this step is current (part 1's closing slide: the recorded `starlab bench services`
	// chart); FigureSVG is its content, filled by LoadParts and served at PathFigure.
	Figure    string `json:"figure,omitempty"`
	FigureSVG []byte `json:"-"`
	// Objects is the YAML of Apply, filled by LoadParts.
	Objects []File `json:"objects,omitempty"`
}

// File is one manifest of a step: where it came from and its text.
type File struct {
	Path string `json:"path"`
	YAML string `json:"yaml"`
}

// Kubectl is the equivalent kubectl line of the step (or its check's command).
func (s Step) Kubectl() string {
	if len(s.Apply) == 0 {
		return s.Command
	}
	var b strings.Builder
	b.WriteString("kubectl apply")
	for _, f := range s.Apply {
		b.WriteString(" -f " + manifestPath(f))
	}
	for _, o := range s.Objects {
		if strings.Contains(o.YAML, manifests.DemoImagePlaceholder) {
			// The demo image is the one the lab loaded: take it from the shop's db.
			return fmt.Sprintf("sed \"s|%s|$(kubectl -n shop get deploy db -o jsonpath='{.spec.template.spec.containers[0].image}')|\" %s | kubectl apply -f -",
				manifests.DemoImagePlaceholder, strings.Join(mapPaths(s.Apply), " "))
		}
	}
	return b.String()
}

func mapPaths(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = manifestPath(f)
	}
	return out
}

// UndoKubectl is the kubectl line that undoes the step.
func (s Step) UndoKubectl() string {
	if len(s.Apply) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("kubectl delete --ignore-not-found")
	for _, f := range s.Apply {
		b.WriteString(" -f " + manifestPath(f))
	}
	return b.String()
}

// manifestPath is where a presenter finds f in the repository.
func manifestPath(f string) string {
	if strings.HasPrefix(f, "stars/") || strings.HasPrefix(f, "apis/") {
		return "manifests/" + f
	}
	return "internal/workshop/parts/" + f
}

// LoadParts reads every *.yaml file directly in partsFS that has a top-level steps list, in name
// order, and resolves each step's files first in partsFS, then in manifestsFS. Other YAML files there
// are objects steps apply. Errors name the file and what to fix.
func LoadParts(partsFS, manifestsFS fs.FS) ([]Part, error) {
	entries, err := fs.ReadDir(partsFS, ".")
	if err != nil {
		return nil, fmt.Errorf("list parts: %w (pass a directory of part YAML files)", err)
	}
	var names []string
	for _, e := range entries {
		if ext := path.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var parts []Part
	for _, n := range names {
		data, err := fs.ReadFile(partsFS, n)
		if err != nil {
			return nil, fmt.Errorf("read part %s: %w", n, err)
		}
		var probe struct {
			Steps []any `json:"steps"`
		}
		if err := yaml.Unmarshal(data, &probe); err != nil || probe.Steps == nil {
			continue // an object file (or not a part): steps refer to it by name
		}
		var p Part
		if err := yaml.UnmarshalStrict(data, &p); err != nil {
			return nil, fmt.Errorf("part %s: %w (see internal/workshop/parts for the format)", n, err)
		}
		if err := p.resolve(partsFS, manifestsFS); err != nil {
			return nil, fmt.Errorf("part %s: %w", n, err)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, errors.New("no part found: a part is a YAML file with name, title and steps (see internal/workshop/parts)")
	}
	return parts, nil
}

func (p *Part) resolve(partsFS, manifestsFS fs.FS) error {
	if p.Name == "" || len(p.Steps) == 0 {
		return errors.New("a part needs a name and at least one step")
	}
	switch p.Picture {
	case "":
		p.Picture = PictureMap
	case PictureMap, PictureStars:
	default:
		return fmt.Errorf("picture %q: use %s or %s", p.Picture, PictureMap, PictureStars)
	}
	for _, names := range [][]string{p.Rows, p.Cols} {
		for _, n := range names {
			w, ok := p.Workload(n)
			if !ok {
				return fmt.Errorf("matrix names workload %q, which workloads does not list", n)
			}
			if w.ProbePort == 0 {
				return fmt.Errorf("workload %s: probePort is required", n)
			}
		}
	}
	for _, n := range p.Cols {
		if w, _ := p.Workload(n); w.Service == "" || w.Port == 0 {
			return fmt.Errorf("matrix column %s needs a service and a port", n)
		}
	}
	seen := map[string]bool{}
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("step %d: a unique name is required", i+1)
		}
		seen[s.Name] = true
		if s.Check != "" && !knownCheck(s.Check) {
			return fmt.Errorf("step %s: unknown check %q: use one of %v", s.Name, s.Check, Checks())
		}
		if s.Figure != "" {
			svg, err := readFigure(partsFS, s.Figure)
			if err != nil {
				return fmt.Errorf("step %s: %w", s.Name, err)
			}
			s.FigureSVG = svg
		}
		for _, f := range s.Apply {
			data, err := fs.ReadFile(partsFS, f)
			if errors.Is(err, fs.ErrNotExist) {
				data, err = fs.ReadFile(manifestsFS, f)
			}
			if err != nil {
				return fmt.Errorf("step %s: read %s: %w (a path in the parts directory or in manifests/)", s.Name, f, err)
			}
			s.Objects = append(s.Objects, File{Path: f, YAML: string(data)})
		}
	}
	return nil
}

// readFigure reads a step's figure from the parts directory and checks that it is an SVG document.
func readFigure(partsFS fs.FS, name string) ([]byte, error) {
	if path.Ext(name) != ".svg" {
		return nil, fmt.Errorf("figure %s: want an .svg file of the parts directory (such as a `starlab bench services` chart)", name)
	}
	data, err := fs.ReadFile(partsFS, name)
	if err != nil {
		return nil, fmt.Errorf("figure %s: %w (a path in the parts directory)", name, err)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("figure %s: not an SVG document (no <svg> root element): %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "svg" || se.Name.Space != svgNamespace {
				return nil, fmt.Errorf("figure %s: root element <%s> (namespace %q): want <svg xmlns=%q>", name, se.Name.Local, se.Name.Space, svgNamespace)
			}
			return data, nil
		}
	}
}

const svgNamespace = "http://www.w3.org/2000/svg"

// Workload returns the workload called name.
func (p *Part) Workload(name string) (Workload, bool) {
	for _, w := range p.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}
