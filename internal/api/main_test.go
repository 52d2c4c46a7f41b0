package api

import (
	"testing"

	"go.uber.org/goleak"
)

// The event stream runs a hub goroutine and one per client: none may outlive
// the agent (Backend.Stopped) or its client.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
