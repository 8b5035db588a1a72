package scenarios

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"strings"
	"text/template"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/manifests"
)

// testdata holds the features' workloads and the objects steps apply (*.yaml; those with fields to
// fill are text/templates).
//
//go:embed testdata/*.yaml
var testdata embed.FS

// testdataFile returns testdata/<name>.
func testdataFile(name string) (string, error) {
	b, err := testdata.ReadFile("testdata/" + name)
	if err != nil {
		return "", fmt.Errorf("scenario testdata %s: %w", name, err)
	}
	return string(b), nil
}

// renderTestdata executes the text/template testdata/<name> with data.
func renderTestdata(name string, data any) ([]byte, error) {
	text, err := testdataFile(name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse scenario testdata %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render scenario testdata %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// applyWorkloads applies the test workloads testdata/<name> with the demo image placeholder
// replaced by the demo image `starlab up` built (lab.SubstituteImages, as `starlab up` applies the
// demos), and returns the highest resourceVersion written.
func (e *Env) applyWorkloads(ctx context.Context, name string) (int64, error) {
	yaml, err := testdataFile(name)
	if err != nil {
		return 0, err
	}
	img, err := e.demoImage(ctx)
	if err != nil {
		return 0, err
	}
	return e.Apply(ctx, []byte(lab.SubstituteImages(yaml, map[string]string{images.Demo: img})))
}

// demoImage is the demo image `starlab up` built, read from the deployed demos (or an earlier
// scenario's workloads).
func (e *Env) demoImage(ctx context.Context) (string, error) {
	for _, ns := range []string{"stars", "client", "management-ui", "shop", svcNamespace} {
		deps, err := e.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, d := range deps.Items {
			for _, c := range d.Spec.Template.Spec.Containers {
				if strings.HasPrefix(c.Image, "localhost/starlab/demo:") && c.Image != manifests.DemoImagePlaceholder {
					return c.Image, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no deployment uses a localhost/starlab/demo image: bring the lab up with `starlab up` (it deploys the demos)")
}
