package bundle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/starlab-dev/starlab/internal/lab"
)

// Redacted replaces every redacted value in a bundle.
const Redacted = "REDACTED"

// minLiteral is the shortest value replaced wherever it appears (logs, flows, any file): shorter
// values would blank unrelated text, so they are replaced only where they are named (a Secret's
// data, a key named by --redact-key).
const minLiteral = 4

// Redactor replaces secret values in everything a bundle writes: the literal values (and their
// base64 forms) anywhere in a file, and in objects the Secret data and the values of named keys.
// A nil *Redactor changes nothing.
type Redactor struct {
	keys     []string
	values   []string
	replacer *strings.Replacer
}

// NewRedactor returns a redactor of the values given and of any value whose key is in keys
// (a map key, or the value of an entry {name: KEY, value: ...} such as a container env var).
func NewRedactor(keys []string, values []string) *Redactor {
	r := &Redactor{keys: slices.Clone(keys)}
	for _, v := range values {
		r.addValue(v)
	}
	r.build()
	return r
}

// replacedEverywhere reports whether the literal value v is replaced wherever it appears: not when
// it is shorter than minLiteral, nor when it is a JSON scalar (true, false, null, a number, as in
// kubeadm's bootstrap token Secret: usage-bootstrap-signing "true"), which stands in the structure of
// every JSON and YAML file the bundle holds (MANIFEST.json's "redacted": true). Such values are
// still replaced where they are named (Object) and in their base64 forms.
func replacedEverywhere(v string) bool {
	if len(v) < minLiteral {
		return false
	}
	var x any
	if json.Unmarshal([]byte(v), &x) == nil {
		switch x.(type) {
		case bool, float64, nil:
			return false
		}
	}
	return true
}

func (r *Redactor) addValue(v string) {
	if len(v) < minLiteral {
		return
	}
	forms := []string{base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v))}
	if replacedEverywhere(v) {
		forms = append(forms, v)
	}
	for _, form := range forms {
		if !slices.Contains(r.values, form) {
			r.values = append(r.values, form)
		}
	}
}

func (r *Redactor) build() {
	// Longest first, so a value that contains another is replaced whole.
	slices.SortFunc(r.values, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(r.values))
	for _, v := range r.values {
		pairs = append(pairs, v, Redacted)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// Values is how many literal forms are replaced.
func (r *Redactor) Values() int {
	if r == nil {
		return 0
	}
	return len(r.values)
}

// Bytes returns data with every literal value replaced.
func (r *Redactor) Bytes(data []byte) []byte {
	if r == nil || len(r.values) == 0 || len(data) == 0 {
		return data
	}
	return []byte(r.replacer.Replace(string(data)))
}

// Object redacts one object in place: a Secret's data and stringData, and every value whose key
// is named.
func (r *Redactor) Object(obj map[string]any) {
	if r == nil {
		return
	}
	if obj["kind"] == "Secret" {
		for _, f := range []string{"data", "stringData"} {
			if m, ok := obj[f].(map[string]any); ok {
				for k := range m {
					m[k] = Redacted
				}
			}
		}
		if md, ok := obj["metadata"].(map[string]any); ok {
			if an, ok := md["annotations"].(map[string]any); ok {
				// kubectl keeps the whole object, data included, in this annotation.
				delete(an, "kubectl.kubernetes.io/last-applied-configuration")
			}
		}
	}
	r.walk(obj)
}

// named calls fn on every string value whose key is named: a map value under a key in keys, or
// the value of an entry {name: KEY, value: ...}; fn returns the replacement.
func (r *Redactor) named(v any, fn func(string) string) {
	switch t := v.(type) {
	case map[string]any:
		if name, ok := t["name"].(string); ok && slices.Contains(r.keys, name) {
			if s, ok := t["value"].(string); ok {
				t["value"] = fn(s)
			}
		}
		for k, val := range t {
			if s, ok := val.(string); ok && slices.Contains(r.keys, k) {
				t[k] = fn(s)
				continue
			}
			r.named(val, fn)
		}
	case []any:
		for _, e := range t {
			r.named(e, fn)
		}
	}
}

func (r *Redactor) walk(v any) { r.named(v, func(string) string { return Redacted }) }

// collectValues adds the values of obj to redact everywhere: a Secret's decoded data and
// stringData, and every string value whose key is named.
func (r *Redactor) collectValues(obj map[string]any) {
	if obj["kind"] == "Secret" {
		if m, ok := obj["data"].(map[string]any); ok {
			for _, v := range m {
				if s, ok := v.(string); ok {
					if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
						r.addValue(string(dec))
					}
					r.addValue(s)
				}
			}
		}
		if m, ok := obj["stringData"].(map[string]any); ok {
			for _, v := range m {
				if s, ok := v.(string); ok {
					r.addValue(s)
				}
			}
		}
	}
	r.named(obj, func(v string) string {
		r.addValue(v)
		return v
	})
}

// redactionSources are the resources whose values a redactor learns before the bundle is written:
// every Secret, and the objects the bundle dumps (for the values of named keys).
func redactionSources(dumps []objectDump) []schema.GroupVersionResource {
	out := []schema.GroupVersionResource{{Version: "v1", Resource: "secrets"}}
	for _, d := range dumps {
		if !slices.Contains(out, d.gvr) {
			out = append(out, d.gvr)
		}
	}
	return out
}

// LearnRedactor lists every Secret of the cluster and the objects of gvrs and returns a redactor of
// their secret values and of the values of keys. It fails when any list fails: a bundle that
// cannot be redacted is not written.
func LearnRedactor(ctx context.Context, dyn dynamic.Interface, keys []string, gvrs []schema.GroupVersionResource) (*Redactor, error) {
	r := &Redactor{keys: slices.Clone(keys)}
	for _, gvr := range gvrs {
		if gvr.Resource != "secrets" && len(keys) == 0 {
			continue
		}
		opts := metav1.ListOptions{Limit: 500}
		for {
			list, err := dyn.Resource(gvr).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list %s to learn what to redact (the bundle is not written unredacted): %w", gvrName(gvr), err)
			}
			for i := range list.Items {
				r.collectValues(list.Items[i].UnstructuredContent())
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
	}
	r.build()
	return r, nil
}

// redactUnstructured redacts a copy of u.
func (r *Redactor) redactUnstructured(u *unstructured.Unstructured) map[string]any {
	obj := u.DeepCopy().UnstructuredContent()
	r.Object(obj)
	return obj
}

// learnRedactor connects to the lab and learns what to redact.
func learnRedactor(ctx context.Context, l *lab.Lab, opts Options) (*Redactor, error) {
	if _, err := l.WriteKubeconfig(ctx); err != nil {
		return nil, fmt.Errorf("kubeconfig of lab %q (needed to learn what --redact replaces): %w", opts.Lab, err)
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for lab %q: %w", opts.Lab, err)
	}
	r := &run{opts: opts}
	return LearnRedactor(ctx, dyn, opts.RedactKeys, redactionSources(r.objectDumps()))
}
