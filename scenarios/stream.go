package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/demo"
)

// PodStream is a stream (a long-lived connection sending a line every interval, internal/demo
// stream.go) running inside pod.
type PodStream struct {
	Pod  *corev1.Pod
	ID   string
	Name string // what the scenario calls it, for messages
}

// StartStream opens a stream from inside pod to target (host:port) over protocol (tcp or udp),
// a line every interval, through the demo's POST /streams (port-forward: the test's own request is
// not subject to policy, the stream is).
func (e *Env) StartStream(ctx context.Context, pod *corev1.Pod, name, target, protocol string, interval time.Duration) (*PodStream, demo.StreamStatus, error) {
	body, err := json.Marshal(demo.StreamRequest{Target: target, Protocol: protocol, Interval: interval.String()})
	if err != nil {
		return nil, demo.StreamStatus{}, fmt.Errorf("encode stream request: %w", err)
	}
	st, err := e.streamCall(ctx, pod, http.MethodPost, "/streams", body)
	if err != nil {
		return nil, st, fmt.Errorf("start stream %s from %s/%s to %s: %w", name, pod.Namespace, pod.Name, target, err)
	}
	return &PodStream{Pod: pod, ID: st.ID, Name: name}, st, nil
}

// streamStatus reads what the stream saw so far.
func (e *Env) streamStatus(ctx context.Context, s *PodStream) (demo.StreamStatus, error) {
	st, err := e.streamCall(ctx, s.Pod, http.MethodGet, "/streams/"+s.ID, nil)
	if err != nil {
		return st, fmt.Errorf("status of stream %s: %w", s.Name, err)
	}
	return st, nil
}

// stopStream closes the stream and returns its final status.
func (e *Env) stopStream(ctx context.Context, s *PodStream) (demo.StreamStatus, error) {
	st, err := e.streamCall(ctx, s.Pod, http.MethodDelete, "/streams/"+s.ID, nil)
	if err != nil {
		return st, fmt.Errorf("stop stream %s: %w", s.Name, err)
	}
	return st, nil
}

// streamCall sends one request of the streams API to pod's demo HTTP port, once more over a new
// port-forward when the first one fails to connect.
func (e *Env) streamCall(ctx context.Context, pod *corev1.Pod, method, path string, body []byte) (demo.StreamStatus, error) {
	port, err := containerPort(pod)
	if err != nil {
		return demo.StreamStatus{}, err
	}
	for attempt := 0; ; attempt++ {
		local, err := e.PortForward(ctx, pod, port)
		if err != nil {
			return demo.StreamStatus{}, err
		}
		st, retry, err := doStreamCall(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", local, path), method, body)
		if err == nil || !retry {
			return st, err
		}
		e.dropForward(pod, port)
		if attempt == 1 || ctx.Err() != nil {
			return st, err
		}
	}
}

// doStreamCall returns the answer, and whether a failure was the transport's (worth a new forward).
func doStreamCall(ctx context.Context, u, method string, body []byte) (demo.StreamStatus, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return demo.StreamStatus{}, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return demo.StreamStatus{}, true, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return demo.StreamStatus{}, true, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return demo.StreamStatus{}, false, fmt.Errorf("%s %s answered %s: %s", method, u, resp.Status, bytes.TrimSpace(b))
	}
	var st demo.StreamStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("decode stream status: %w", err)
	}
	return st, false, nil
}
