package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// kind's labels on node containers (sigs.k8s.io/kind/pkg/cluster/internal/providers/docker/constants.go).
const (
	kindClusterLabel = "io.x-k8s.kind.cluster"
	kindRoleLabel    = "io.x-k8s.kind.role"
)

// container is what the lab needs to know about one kind node container.
type container struct {
	ID      string
	Name    string
	Cluster string
	Role    string
	State   string // docker state: running, exited, created, ...
	Image   string
	Volumes []string // named and anonymous docker volumes mounted into the container
}

// docker runs the docker CLI (as kind's own docker provider does) and returns its stdout.
func docker(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// kindContainers lists every container carrying kind's cluster label (any state), optionally only those of
// one cluster, sorted by name.
func kindContainers(ctx context.Context, cluster string) ([]container, error) {
	filter := kindClusterLabel
	if cluster != "" {
		filter += "=" + cluster
	}
	out, err := docker(ctx, "ps", "-a", "-q", "--no-trunc", "--filter", "label="+filter)
	if err != nil {
		return nil, fmt.Errorf("list kind node containers: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil, nil
	}
	out, err = docker(ctx, append([]string{"inspect", "--type", "container"}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("inspect kind node containers: %w", err)
	}
	return parseInspect(out)
}

// parseInspect decodes `docker inspect` output of kind node containers.
func parseInspect(data []byte) ([]container, error) {
	var raw []struct {
		ID     string `json:"Id"`
		Name   string `json:"Name"`
		State  struct{ Status string }
		Config struct {
			Image  string
			Labels map[string]string
		}
		Mounts []struct {
			Type string
			Name string
		}
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode docker inspect output: %w", err)
	}
	cs := make([]container, 0, len(raw))
	for _, r := range raw {
		c := container{
			ID:      r.ID,
			Name:    strings.TrimPrefix(r.Name, "/"),
			Cluster: r.Config.Labels[kindClusterLabel],
			Role:    r.Config.Labels[kindRoleLabel],
			State:   r.State.Status,
			Image:   r.Config.Image,
		}
		for _, m := range r.Mounts {
			if m.Type == "volume" && m.Name != "" {
				c.Volumes = append(c.Volumes, m.Name)
			}
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs, nil
}

// removeContainers force-removes containers with their anonymous volumes, then removes any of their
// volumes docker kept (named volumes, or anonymous ones a crashed engine left behind).
func removeContainers(ctx context.Context, cs []container) error {
	if len(cs) == 0 {
		return nil
	}
	args := []string{"rm", "-f", "-v"}
	var volumes []string
	for _, c := range cs {
		args = append(args, c.ID)
		volumes = append(volumes, c.Volumes...)
	}
	if _, err := docker(ctx, args...); err != nil {
		return fmt.Errorf("remove node containers: %w", err)
	}
	return removeVolumes(ctx, volumes)
}

// removeVolumes removes the volumes that still exist; a volume already gone is fine.
func removeVolumes(ctx context.Context, volumes []string) error {
	for _, v := range volumes {
		if _, err := docker(ctx, "volume", "inspect", v); err != nil {
			continue // already removed (docker rm -v)
		}
		if _, err := docker(ctx, "volume", "rm", "-f", v); err != nil {
			return fmt.Errorf("remove volume %s: %w", v, err)
		}
	}
	return nil
}

// dockerAnswers reports an error naming the fix when the docker engine does not answer.
func dockerAnswers(ctx context.Context) error {
	if _, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("docker engine not answering (run `starlab up`, whose host step starts it, or start dockerd): %w", err)
	}
	return nil
}
