package workshop

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// DockerExec runs argv in the kind node container called node (the checks of part 1 read each
// node's iptables this way), within 30 s.
func DockerExec(ctx context.Context, node string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"exec", node}, argv...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("docker exec %s %s: %w: %s", node, strings.Join(argv, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("docker exec %s %s: %w", node, strings.Join(argv, " "), err)
	}
	return string(out), nil
}
