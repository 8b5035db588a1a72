package workshop

import (
	"fmt"
	"io/fs"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// Expected computes the part's matrix after steps[0..upto] from the policies, with internal/oracle:
// the part's workload manifests plus every object the applied steps hold. A workload whose
// Deployment is not among them is Absent.
func Expected(p *Part, manifestsFS fs.FS, upto int) (*Matrix, error) {
	if len(p.Rows) == 0 {
		return nil, nil
	}
	objs := &oracle.Objects{}
	files, err := lab.ManifestFiles(manifestsFS, p.Manifests...)
	if err != nil {
		return nil, fmt.Errorf("expected matrix of part %s: %w", p.Name, err)
	}
	for _, f := range files {
		data, err := fs.ReadFile(manifestsFS, f)
		if err != nil {
			return nil, fmt.Errorf("expected matrix of part %s: read %s: %w", p.Name, f, err)
		}
		if err := objs.Add(f, data); err != nil {
			return nil, fmt.Errorf("expected matrix of part %s: %w", p.Name, err)
		}
	}
	for i := 0; i <= upto && i < len(p.Steps); i++ {
		for _, f := range p.Steps[i].Objects {
			if err := objs.Add(f.Path, []byte(f.YAML)); err != nil {
				return nil, fmt.Errorf("expected matrix of part %s, step %s: %w", p.Name, p.Steps[i].Name, err)
			}
		}
	}
	c, err := objs.Cluster()
	if err != nil {
		return nil, fmt.Errorf("expected matrix of part %s: %w", p.Name, err)
	}
	o, err := oracle.New(c)
	if err != nil {
		return nil, fmt.Errorf("expected matrix of part %s: %w", p.Name, err)
	}
	m := NewMatrix(p.Rows, p.Cols, Absent)
	for i, r := range p.Rows {
		src, _ := p.Workload(r)
		for j, col := range p.Cols {
			if r == col {
				continue
			}
			dst, _ := p.Workload(col)
			if o.Pod(src.Namespace+"/"+src.Deployment) == nil || o.Service(dst.Namespace+"/"+dst.Service) == nil {
				continue
			}
			v, err := o.Evaluate(oracle.PodEndpoint(src.Namespace, src.Deployment), oracle.ServiceEndpoint(dst.Namespace, dst.Service), dst.Port, corev1.ProtocolTCP)
			if err != nil {
				return nil, fmt.Errorf("expected %s -> %s: %w", r, col, err)
			}
			m.Cells[i][j] = map[bool]string{true: Yes, false: No}[v.Allowed]
		}
	}
	return m, nil
}
