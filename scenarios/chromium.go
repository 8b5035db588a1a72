package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/chromedp/chromedp"
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

// chromiumPolledPage loads the observer UI at url in headless Chromium (driven by chromedp), waits
// until the map is drawn (the page's worker has posted a view and the page rendered it) and, for a
// ?select= link, the selected edge's panel is filled; it returns the DOM and saves a screenshot at shot
// (none when shot is "").
func chromiumPolledPage(ctx context.Context, url, shot string) (string, error) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return "", fmt.Errorf("chromium not found: install it with `apt-get install -y chromium`: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1500, 900), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	const drawn = `window.starlabMap && window.starlabMap.renders.length > 0 &&
		(!new URLSearchParams(location.search).get("select") || !!document.querySelector("#panel h2") ||
		document.getElementById("panel").textContent.includes("is not in the graph"))`
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1500, 900), chromedp.Navigate(url),
		chromedp.Poll[chromedp.Void](drawn, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		return "", fmt.Errorf("chromium %s: the map was not drawn: %w", url, err)
	}
	dom, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		return "", fmt.Errorf("chromium %s: read the DOM: %w", url, err)
	}
	if shot == "" {
		return dom, nil
	}
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		return dom, fmt.Errorf("screenshot of %s: %w", url, err)
	}
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		return dom, fmt.Errorf("screenshot dir: %w", err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		return dom, fmt.Errorf("screenshot %s: %w", shot, err)
	}
	return dom, nil
}
