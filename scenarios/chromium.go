package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// runChromium runs headless Chromium on url with a throwaway profile and extra flags, within
// timeout, and returns what it printed (the DOM with --dump-dom).
func runChromium(ctx context.Context, url string, timeout time.Duration, extra ...string) (string, error) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return "", fmt.Errorf("chromium not found: install it with `apt-get install -y chromium`: %w", err)
	}
	dir, err := os.MkdirTemp("", "starlab-chromium-")
	if err != nil {
		return "", fmt.Errorf("chromium profile dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + dir}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("chromium %v %s: %w: %s", extra, url, err, stderr.String())
	}
	return string(out), nil
}

// chromiumDOM loads url in headless Chromium and returns the DOM after load.
func chromiumDOM(ctx context.Context, url string) (string, error) {
	return runChromium(ctx, url, 30*time.Second, "--dump-dom")
}

// chromiumPolledPage loads url in headless Chromium, lets the page poll its API (virtual time budget),
// returns the DOM, and saves a screenshot at shot (none when shot is "").
func chromiumPolledPage(ctx context.Context, url, shot string) (string, error) {
	page := []string{"--disable-dev-shm-usage", "--virtual-time-budget=6000", "--window-size=1500,900"}
	dom, err := runChromium(ctx, url, 60*time.Second, append(page, "--dump-dom")...)
	if err != nil {
		return "", err
	}
	if shot == "" {
		return dom, nil
	}
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		return dom, fmt.Errorf("screenshot dir: %w", err)
	}
	abs, err := filepath.Abs(shot)
	if err != nil {
		return dom, fmt.Errorf("screenshot path: %w", err)
	}
	if _, err := runChromium(ctx, url, 60*time.Second, append(page, "--screenshot="+abs)...); err != nil {
		return dom, err
	}
	return dom, nil
}
