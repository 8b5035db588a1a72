package scenarios

import (
	"github.com/cucumber/godog"
)

// registerCommonSteps holds steps every feature may use (lab readiness, applying manifests).
func registerCommonSteps(sc *godog.ScenarioContext, w *World) {
	_ = sc
	_ = w
}
