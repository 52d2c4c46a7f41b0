package driver

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/testkit"
)

// check-config validates driver.commands against config.DriverOperations;
// the driver must know exactly those.
func TestOperationsMatchConfig(t *testing.T) {
	if !slices.Equal(Operations, config.DriverOperations) {
		t.Fatalf("driver.Operations %v != config.DriverOperations %v", Operations, config.DriverOperations)
	}
}

// check-config accepts exactly the driver types New builds: a config it passes must not fail at agent start with
// "not a driver this agent can run", and a driver New builds must not be refused by check-config.
func TestNewBuildsExactlyTheConfigDriverTypes(t *testing.T) {
	// minimal is the smallest valid configuration of each type. A type added to config.DriverTypes without a case
	// here fails the test: give it one, and a case in New.
	minimal := func(t *testing.T, typ string) (*config.Driver, Options) {
		switch typ {
		case "exec":
			return &config.Driver{Type: "exec", Commands: map[string][]string{OpState: {"true"}}}, Options{Node: "n1"}
		case "postgres":
			w := newPGWorld(t)
			return w.config("n1", 5432), w.options("n1", []string{"n1", "n2"})
		case "redis":
			w := newRedisWorld(t, "n1")
			return w.cfg("n1"), Options{Node: "n1", Peers: w.peers}
		}
		t.Fatalf("no minimal configuration for driver type %q in this test: add one", typ)
		return nil, Options{}
	}
	for _, typ := range config.DriverTypes {
		t.Run(typ, func(t *testing.T) {
			cfg, opts := minimal(t, typ)
			if _, err := New(cfg, opts); err != nil {
				t.Fatalf("New(%s) = %v; check-config accepts driver.type %s, so New must build it", typ, err, typ)
			}
			if es := driverTypeErrors(t, typ); len(es) > 0 {
				t.Errorf("check-config refuses driver.type %s: %v", typ, es)
			}
		})
	}

	use := "use exec, postgres or redis"
	for _, tt := range []struct{ typ, want string }{
		{"mysql", `groups[0].driver.type: "mysql" is not a driver; ` + use},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			if got := driverTypeErrors(t, tt.typ); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("check-config on driver.type %s: %q, want %q", tt.typ, got, tt.want)
			}
			_, err := New(&config.Driver{Type: tt.typ}, Options{Node: "n1"})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), fmt.Sprintf("driver.type %q is not a driver this agent can run; use one of exec, postgres, redis", tt.typ)) {
				t.Errorf("New(%s) = %v", tt.typ, err)
			}
		})
	}
}

// driverTypeErrors returns check-config's errors about driver.type for a group whose driver is of type typ.
func driverTypeErrors(t *testing.T, typ string) []string {
	t.Helper()
	doc := testkit.ThreeNodes{Group: "db", GroupExtra: "driver: {type: " + typ + "}"}.YAML()
	_, err := config.Parse([]byte(doc), t.TempDir())
	var es config.Errors
	if err != nil && !errors.As(err, &es) {
		t.Fatalf("Parse: %v", err)
	}
	var got []string
	for _, e := range es {
		if e.Path == "groups[0].driver.type" {
			got = append(got, e.Error())
		}
	}
	return got
}
