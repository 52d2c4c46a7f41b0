package driver

import (
	"slices"
	"testing"

	"github.com/baton-ha/baton/internal/config"
)

// check-config validates driver.commands against config.DriverOperations;
// the driver must know exactly those.
func TestOperationsMatchConfig(t *testing.T) {
	if !slices.Equal(Operations, config.DriverOperations) {
		t.Fatalf("driver.Operations %v != config.DriverOperations %v", Operations, config.DriverOperations)
	}
}
