package nodeimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// docker runs a docker CLI command and returns its combined output.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 10))
	}
	return string(out), nil
}

func imageExists(ctx context.Context, ref string) bool {
	_, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

func dockerRootDir(ctx context.Context) (string, error) {
	out, err := docker(ctx, nil, "info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// dockerLoad loads a (gzip) docker-archive and checks that it provided ref.
func dockerLoad(ctx context.Context, archive, ref string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("open node image archive: %w", err)
	}
	defer f.Close()
	if _, err := docker(ctx, f, "load", "-q"); err != nil {
		return err
	}
	if !imageExists(ctx, ref) {
		return fmt.Errorf("docker load %s did not provide %s", archive, ref)
	}
	return nil
}
