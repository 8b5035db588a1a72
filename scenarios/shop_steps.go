package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/manifests"
)

func shopWorkloads() []Workload {
	return []Workload{
		{Name: "shopper", Ref: PodRef{"shop", "app=shopper"}, Target: "shopper.shop:8080"},
		{Name: "orders", Ref: PodRef{"shop", "app=orders"}, Target: "orders.shop:8080"},
		{Name: "inventory", Ref: PodRef{"shop", "app=inventory"}, Target: "inventory.shop:8080"},
		{Name: "db", Ref: PodRef{"shop", "app=db"}, Target: "db.shop:7000"},
	}
}

func lookupShopWorkload(name string) (Workload, error) {
	return findWorkload("shop", shopWorkloads(), name)
}

func shopPolicyFiles() ([]string, error) { return manifests.Files(manifests.APIsDir + "/policies") }

func shopPolicyFile(name string) (string, error) {
	files, err := shopPolicyFiles()
	if err != nil {
		return "", err
	}
	if f, ok := policyStepFile(files, name); ok {
		return f, nil
	}
	return "", fmt.Errorf("unknown shop policy %q: see manifests/apis/policies", name)
}

func (e *Env) deleteShopPolicies(ctx context.Context) error {
	files, err := shopPolicyFiles()
	if err != nil {
		return err
	}
	return e.deletePolicyFiles(ctx, files)
}

// shopCall makes an HTTP request to a shop API pod through a port-forward (so the test itself is
// not subject to policy; what the API does next is).
func (e *Env) shopCall(ctx context.Context, app, method, p, body string) (int, string, error) {
	w, err := lookupShopWorkload(app)
	if err != nil {
		return 0, "", err
	}
	pod, err := e.Pod(ctx, w.Ref)
	if err != nil {
		return 0, "", err
	}
	port, err := containerPort(pod)
	if err != nil {
		return 0, "", err
	}
	local, err := e.PortForward(ctx, pod, port)
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", local, p), bytes.NewBufferString(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.dropForward(pod, port)
		return 0, "", fmt.Errorf("%s %s on %s: %w", method, p, app, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// shopSteps are the steps of features/policy.feature (the two APIs sharing one db), one value per
// scenario.
type shopSteps struct {
	w *World
	e *Env
}

// newShopSteps returns the steps of features/policy.feature for the scenario of w.
func newShopSteps(w *World) *shopSteps {
	return &shopSteps{w: w, e: w.Env}
}

// steps lists the steps of features/policy.feature and their methods.
func (s *shopSteps) steps() []step {
	return []step{
		{`^the shop demo is running without policies$`, s.demoRunningWithoutPolicies},
		{`^I apply the shop policy "([^"]*)"$`, s.applyPolicy},
		{`^the shop reachability is:$`, s.reachabilityIs},
		{`^the inventory holds (\d+) "([^"]*)"$`, s.inventoryHolds},
		{`^an order for (\d+) "([^"]*)" is (accepted|refused)$`, s.orderIs},
	}
}

func (s *shopSteps) demoRunningWithoutPolicies(ctx context.Context) error {
	t := godog.T(ctx)
	require.NoError(t, s.e.WaitDeploymentsAvailable(ctx, 3*time.Minute, "shop"), "the shop demo is deployed by `starlab up` (manifests/apis)")
	require.NoError(t, s.e.deleteShopPolicies(ctx))
	s.w.Cleanup(s.e.deleteShopPolicies)
	s.w.SetScope("shop")
	return nil
}

func (s *shopSteps) applyPolicy(ctx context.Context, name string) error {
	t := godog.T(ctx)
	file, err := shopPolicyFile(name)
	require.NoError(t, err)
	_, _, err = s.e.applyPolicyFile(ctx, file)
	require.NoError(t, err)
	return nil
}

func (s *shopSteps) reachabilityIs(ctx context.Context, table *godog.Table) error {
	t := godog.T(ctx)
	expected, err := MatrixFromTable(table)
	require.NoError(t, err)
	res, err := s.e.CheckMatrix(ctx, expected, lookupShopWorkload)
	require.NoError(t, err)
	assert.True(t, res.OK, s.w.matrixReport(ctx, res))
	return nil
}

func (s *shopSteps) inventoryHolds(ctx context.Context, n int, item string) error {
	code, body, err := s.e.shopCall(ctx, "inventory", http.MethodPut, "/items/"+item, fmt.Sprintf(`{"stock": %d}`, n))
	require.NoError(godog.T(ctx), err)
	require.Equal(godog.T(ctx), http.StatusOK, code, body)
	return nil
}

func (s *shopSteps) orderIs(ctx context.Context, n int, item, outcome string) error {
	code, body, err := s.e.shopCall(ctx, "orders", http.MethodPost, "/orders", fmt.Sprintf(`{"item": %q, "qty": %d}`, item, n))
	require.NoError(godog.T(ctx), err)
	if outcome == "accepted" {
		assert.Equal(godog.T(ctx), http.StatusCreated, code, body)
	} else {
		assert.Equal(godog.T(ctx), http.StatusConflict, code, body)
	}
	return nil
}
