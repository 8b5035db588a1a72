package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestHealthCheckNodePort: the agent serves an externalTrafficPolicy Local Service's
// healthCheckNodePort with kube-proxy's answer: 200 and the local ready endpoint count, 503 with
// none, 503 when only terminating ones are left; the port closes with the Service.
func TestHealthCheckNodePort(t *testing.T) {
	s, _ := newTestServices("172.18.0.2")
	s.health = newHealthChecks(slog.Default())
	addrs := map[uint16]string{}
	s.health.listen = func(port uint16) (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addrs[port] = l.Addr().String()
		}
		return l, err
	}
	t.Cleanup(func() { s.health.close(t.Context()) })
	svc := webService(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = 32100
	})
	get := func() (int, map[string]any, string) {
		t.Helper()
		addr, ok := addrs[32100]
		require.True(t, ok, "port 32100 opened")
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + addr + "/healthz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var body map[string]any
		require.NoError(t, json.Unmarshal(b, &body), "body %s", b)
		return resp.StatusCode, body, resp.Header.Get("X-Load-Balancing-Endpoint-Weight")
	}
	local := func(ip string, terminating bool) discoveryv1.Endpoint {
		e := discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr("n1")}
		if terminating {
			e.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
		}
		return e
	}

	s.onService(svc, false)
	code, body, _ := get()
	assert.Equal(t, http.StatusServiceUnavailable, code, "no endpoints")
	assert.Equal(t, map[string]any{"service": map[string]any{"namespace": "shop", "name": "web"}, "localEndpoints": float64(0), "serviceProxyHealthy": true}, body)

	sl := webSlice()
	sl.Endpoints = []discoveryv1.Endpoint{local("10.244.1.5", false), local("10.244.1.6", false), {Addresses: []string{"10.244.2.9"}, NodeName: ptr("n2")}}
	s.onSlice(sl, false)
	code, body, weight := get()
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, float64(2), body["localEndpoints"])
	assert.Equal(t, "2", weight)

	sl = webSlice()
	sl.Endpoints = []discoveryv1.Endpoint{local("10.244.1.5", true), {Addresses: []string{"10.244.2.9"}, NodeName: ptr("n2")}}
	s.onSlice(sl, false)
	code, body, _ = get()
	assert.Equal(t, http.StatusServiceUnavailable, code, "only a terminating local endpoint")
	assert.Equal(t, float64(0), body["localEndpoints"])

	addr := addrs[32100]
	s.onService(svc, true)
	assert.Empty(t, s.health.servers, "Service deleted: port closed")
	_, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/healthz")
	assert.Error(t, err, "nothing answers on the closed port")
}
