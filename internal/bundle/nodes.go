package bundle

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/exec"

	"github.com/starlab-dev/starlab/internal/agentapi"
)

// nodeCommand is one command run in every node (kind's node exec, i.e. docker exec, in-process).
type nodeCommand struct {
	file string
	argv []string
}

func (r *run) nodeCommands() []nodeCommand {
	since := "@" + strconv.FormatInt(r.started().Add(-r.opts.Since).Unix(), 10)
	journal := func(unit string) []string {
		return []string{"journalctl", "--no-pager", "-o", "short-iso-precise", "-u", unit, "--since", since, "-n", "5000"}
	}
	return []nodeCommand{
		{"ip-route.json", []string{"ip", "-j", "route"}},
		{"ip-addr.json", []string{"ip", "-j", "addr"}},
		{"iptables-save.txt", []string{"iptables-save"}},
		{"bpffs-starlab.txt", []string{"ls", "-laR", agentapi.PinDir}},
		{"containerd.journal.txt", journal("containerd")},
		{"kubelet.journal.txt", journal("kubelet")},
	}
}

// collectNodes runs the node commands in every node of the lab (nodes in parallel) and saves their output under nodes/<node>/,
// plus kube-svc-rules.txt: the number of iptables-save lines naming KUBE-SVC (0 without kube-proxy).
func (r *run) collectNodes(ctx context.Context, s *stepCtx) error {
	ns, err := r.lab.Nodes(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, n := range ns {
		wg.Go(func() { r.collectNode(ctx, s, n) })
	}
	wg.Wait()
	return nil
}

// collectNode runs the node commands in one node.
func (r *run) collectNode(ctx context.Context, s *stepCtx, n nodes.Node) {
	dir := "nodes/" + n.String()
	for _, c := range r.nodeCommands() {
		out, err := nodeExec(ctx, n, c.argv)
		if err != nil {
			s.fail(dir+"/"+c.file, err)
			continue
		}
		s.add(dir+"/"+c.file, out)
		if c.argv[0] == "iptables-save" {
			s.add(dir+"/kube-svc-rules.txt", []byte(strconv.Itoa(CountKubeSvc(out))+"\n"))
		}
	}
}

// CountKubeSvc is `grep -c KUBE-SVC`: the number of lines naming KUBE-SVC.
func CountKubeSvc(iptablesSave []byte) int {
	n := 0
	for line := range bytes.Lines(iptablesSave) {
		if bytes.Contains(line, []byte("KUBE-SVC")) {
			n++
		}
	}
	return n
}

// nodeExec runs argv in node n and returns its stdout; stderr goes into the error.
func nodeExec(ctx context.Context, n nodes.Node, argv []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := n.CommandContext(ctx, argv[0], argv[1:]...).SetStdout(&stdout).SetStderr(&stderr)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("node %s: %s: %w: %s", n.String(), exec.PrettyCommand(argv[0], argv[1:]...), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
