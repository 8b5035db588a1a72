package workshop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Recorder writes, per step, the result (matrices, flows, timings) as JSON, the matrices as text,
// and a screenshot of the presenter page at URL (headless Chromium, 1280x720) into Dir.
type Recorder struct {
	Dir string
	URL string // the presenter page; "" skips screenshots
}

// Record writes the files of res, named NN-part-step.*, and returns the screenshot path ("" when
// none was taken).
func (rec *Recorder) Record(ctx context.Context, n int, res StepResult) (string, error) {
	if err := os.MkdirAll(rec.Dir, 0o755); err != nil {
		return "", fmt.Errorf("record directory %s: %w", rec.Dir, err)
	}
	base := filepath.Join(rec.Dir, fmt.Sprintf("%02d-%s-%s", n, res.PartName, res.StepName))
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode step %s: %w", res.StepName, err)
	}
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		return "", fmt.Errorf("record step %s: %w", res.StepName, err)
	}
	if res.Expected != nil && res.Probed != nil {
		txt := "expected (oracle):\n" + res.Expected.Text() + "\nprobed:\n" + res.Probed.Text()
		if err := os.WriteFile(base+".matrix.txt", []byte(txt), 0o644); err != nil {
			return "", fmt.Errorf("record step %s: %w", res.StepName, err)
		}
	}
	if rec.URL == "" {
		return "", nil
	}
	shot := base + ".png"
	return shot, Screenshot(ctx, rec.URL, shot)
}

// Screenshot loads url in headless Chromium at 1280x720, lets the page poll for a few seconds and
// saves a PNG at shot.
func Screenshot(ctx context.Context, url, shot string) error {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("chromium not found: install it (apt-get install -y chromium) or record without screenshots: %w", err)
	}
	abs, err := filepath.Abs(shot)
	if err != nil {
		return fmt.Errorf("screenshot path %s: %w", shot, err)
	}
	profile, err := os.MkdirTemp("", "starlab-workshop-chromium-")
	if err != nil {
		return fmt.Errorf("chromium profile: %w", err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+profile, "--window-size=1280,720", "--virtual-time-budget=3000", "--screenshot="+abs, url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("chromium screenshot of %s: %w: %s", url, err, stderr.String())
	}
	return nil
}
