package scenarios

import (
	"github.com/cucumber/godog"
)

// registerStarsSteps holds the steps of features/stars.feature.
func registerStarsSteps(sc *godog.ScenarioContext, w *World) {
	_ = sc
	_ = w
}
