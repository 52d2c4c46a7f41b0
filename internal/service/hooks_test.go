package service

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunCommandEnvAndOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	res := RunCommand(context.Background(), []string{"/bin/sh", "-c", "env | grep ^BATON_ | sort > " + out},
		Env{Cluster: "c", Node: "n1", Group: "web", Role: "active", Epoch: 7, PreviousOwner: "n2", Reason: "lease acquired"}.Vars(),
		5*time.Second, slog.New(slog.DiscardHandler))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	b, _ := os.ReadFile(out)
	want := "BATON_CLUSTER=c\nBATON_EPOCH=7\nBATON_GROUP=web\nBATON_NODE=n1\nBATON_PREVIOUS_OWNER=n2\nBATON_REASON=lease acquired\nBATON_ROLE=active\n"
	if string(b) != want {
		t.Fatalf("env =\n%s\nwant\n%s", b, want)
	}
}

func TestRunCommandTimeoutKillsTheTree(t *testing.T) {
	start := time.Now()
	res := RunCommand(context.Background(), []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, nil, 200*time.Millisecond,
		slog.New(slog.DiscardHandler))
	if !res.TimedOut || res.Err == nil || !strings.Contains(res.Err.Error(), "timed out") {
		t.Fatalf("result = %+v, want a timeout", res)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
}

func TestRunCommandErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if res := RunCommand(context.Background(), nil, nil, time.Second, log); res.Err == nil {
		t.Fatal("empty argv accepted")
	}
	if res := RunCommand(context.Background(), []string{"/nonexistent/hook"}, nil, time.Second, log); res.Err == nil {
		t.Fatal("missing binary accepted")
	}
	if res := RunCommand(context.Background(), []string{"/bin/false"}, nil, time.Second, log); res.Err == nil {
		t.Fatal("exit 1 accepted")
	}
}

func TestHookRunnerKeepsOrderPerGroup(t *testing.T) {
	r := NewHookRunner(slog.New(slog.DiscardHandler))
	defer r.Close()
	out := filepath.Join(t.TempDir(), "order")
	for _, role := range []string{"standby", "active", "standby", "active"} {
		r.Enqueue("web", HookJob{Argv: []string{"/bin/sh", "-c", "echo $BATON_ROLE >> " + out}, Env: Env{Role: role}, Timeout: 5 * time.Second})
	}
	if !r.Drain(10 * time.Second) {
		t.Fatal("hooks did not finish")
	}
	b, _ := os.ReadFile(out)
	if string(b) != "standby\nactive\nstandby\nactive\n" {
		t.Fatalf("order = %q", b)
	}
}
