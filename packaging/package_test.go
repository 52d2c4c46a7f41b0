package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPackageVersion(t *testing.T) {
	day := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		describe string
		tagged   bool
		want     string
	}{
		{"v1.2.3", true, "1.2.3"},
		{"1.2.3", true, "1.2.3"},
		{"v1.2.3-dirty", true, "1.2.3.dirty"},
		{"v1.2.3-14-g8fead23", true, "1.2.3+git.14.8fead23"},
		{"v1.2.3-rc1-2-gabc1234-dirty", true, "1.2.3.rc1+git.2.abc1234.dirty"},
		{"8fead23", false, "0.0.0+git20261202.8fead23"},
		{"1234567", false, "0.0.0+git20261202.1234567"}, // an all-digit hash is no version
		{"8fead23-dirty", false, "0.0.0+git20261202.8fead23.dirty"},
		{"dev", false, "0.0.0+git20261202.dev"},
	} {
		if got := PackageVersion(tc.describe, tc.tagged, day); got != tc.want {
			t.Errorf("PackageVersion(%q, tagged %v) = %q, want %q", tc.describe, tc.tagged, got, tc.want)
		}
	}
}

// TestDebInstallRemovePurge builds the packages, installs the .deb on this
// machine and checks what an operator gets: the binary, the unit (systemd-
// analyze verify), the data dir, nothing enabled or started;
// a reinstall keeps an edited config; dpkg -r keeps the config; dpkg -P
// removes it; lintian finds nothing. It needs root and dpkg.
func TestDebInstallRemovePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("*** SKIPPED: installing the .deb needs root; run scripts/test as root ***")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("*** SKIPPED: %s not found: the package test runs on Debian ***", tool)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sh := func(name string, args ...string) string {
		t.Helper()
		defer func(t0 time.Time) {
			if d := time.Since(t0); d > 2*time.Second {
				t.Logf("%s %s took %v", name, strings.Join(args, " "), d.Round(time.Millisecond))
			}
		}(time.Now())
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	installed := func() string {
		out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "baton").Output()
		return strings.TrimSpace(string(out))
	}
	if s := installed(); s != "" && !strings.HasPrefix(s, "un") {
		t.Logf("baton is installed (%s), from an earlier run: purging it first", s)
		sh("dpkg", "-P", "baton")
	}
	// What the package's scripts touch outside its own files: put it back.
	restore := saveDir(t, "/var/lib/baton")
	t.Cleanup(func() {
		if s := installed(); s != "" && !strings.HasPrefix(s, "un") {
			exec.Command("dpkg", "-P", "baton").Run()
		}
		restore()
	})

	start := time.Now()
	// The one command, as an operator runs it. In a process of its own:
	// compressing 20 MB inside this race-instrumented test binary takes
	// minutes instead of seconds. (go test puts its own go first in PATH.)
	build := exec.Command("go", "run", "./packaging", "-o", t.TempDir(), "-formats", "deb,rpm", "-arch", "amd64")
	build.Dir = root
	var stderr bytes.Buffer
	build.Stderr = &stderr
	stdout, err := build.Output()
	if err != nil {
		t.Fatalf("go run ./packaging: %v\n%s", err, stderr.String())
	}
	pkgs := strings.Fields(string(stdout))
	if len(pkgs) != 2 {
		t.Fatalf("go run ./packaging printed %q, want the two packages", stdout)
	}
	t.Logf("built %v in %v", pkgs, time.Since(start).Round(time.Millisecond))
	deb, rpm := pkgs[0], pkgs[1]
	if !strings.HasSuffix(deb, ".deb") || !strings.HasSuffix(rpm, ".rpm") {
		t.Fatalf("packages %v", pkgs)
	}
	if b, _ := os.ReadFile(rpm); !bytes.HasPrefix(b, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Errorf("%s does not start with the RPM lead", rpm)
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Log("*** rpm not installed: the .rpm's file list and scriptlets were not checked (scripts/test installs it as root) ***")
	} else {
		list := sh("rpm", "-qlp", rpm)
		for _, f := range []string{"/usr/bin/baton", "/usr/lib/systemd/system/baton.service", "/etc/baton/baton.yaml"} {
			if !strings.Contains(list, f) {
				t.Errorf("the rpm lacks %s:\n%s", f, list)
			}
		}
		// %config(noreplace): flags c and n.
		flags := sh("rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm)
		if !strings.Contains(flags, "cn /etc/baton/baton.yaml") {
			t.Errorf("baton.yaml is not %%config(noreplace) in the rpm:\n%s", flags)
		}
		if scripts := sh("rpm", "-qp", "--scripts", rpm); !strings.Contains(scripts, "preuninstall scriptlet") || strings.Contains(scripts, "systemctl enable") {
			t.Errorf("rpm scriptlets:\n%s", scripts)
		}
	}
	if c := sh("dpkg-deb", "-f", deb, "Package", "Architecture"); !strings.Contains(c, "Package: baton") || !strings.Contains(c, "Architecture: amd64") {
		t.Errorf("control: %s", c)
	}
	if c := strings.TrimSpace(sh("dpkg-deb", "--info", deb, "conffiles")); c != "/etc/baton/baton.yaml" {
		t.Errorf("conffiles = %q, want /etc/baton/baton.yaml", c)
	}

	sh("dpkg", "-i", deb)
	if v := sh("/usr/bin/baton", "version"); !strings.HasPrefix(v, "baton ") {
		t.Errorf("baton version: %q", v)
	} else if d, _ := describe(root); !strings.Contains(v, d) {
		t.Errorf("baton version %q does not name what it was built from (%s)", v, d)
	}
	if st, err := os.Stat("/var/lib/baton"); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("/var/lib/baton: %v, want a 0700 directory owned by root", err)
	}
	// The unit, as systemd will read it (offline: ExecStart exists, every
	// directive is known, the man pages it names are installed).
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/baton.service").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify baton.service: %v\n%s", err, out)
	}
	for _, f := range []string{"/etc/baton/baton.yaml", "/usr/share/man/man1/baton.1.gz", "/usr/share/man/man1/baton-agent.1.gz",
		"/usr/share/bash-completion/completions/baton", "/usr/share/doc/baton/copyright"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed package lacks %s", f)
		}
	}
	// Nothing enabled: the operator has not configured a cluster yet.
	if wants, _ := filepath.Glob("/etc/systemd/system/*.wants/baton.service"); len(wants) > 0 {
		t.Errorf("the package enabled the unit: %v", wants)
	}
	for _, script := range []string{"preinst", "postinst"} {
		b, err := os.ReadFile("/var/lib/dpkg/info/baton." + script)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "echo ") {
				continue // what it says, not what it runs
			}
			for _, bad := range []string{"systemctl start", "systemctl enable", "systemctl restart", "deb-systemd-invoke", "deb-systemd-helper enable"} {
				if strings.Contains(line, bad) {
					t.Errorf("the %s starts or enables the agent: %s", script, line)
				}
			}
		}
	}
	// The example config tells what to do and is refused as it stands.
	if out, err := exec.Command("/usr/bin/baton", "check-config").CombinedOutput(); err == nil {
		t.Errorf("check-config accepts the example without a secret:\n%s", out)
	} else if !strings.Contains(string(out), "secret") {
		t.Errorf("check-config on the example does not point at the secret:\n%s", out)
	}

	// An operator's config survives a reinstall (upgrade) and a removal.
	edited := "# edited by the operator\n"
	f, err := os.OpenFile("/etc/baton/baton.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edited)
	f.Close()
	os.WriteFile("/etc/baton/secret", []byte("a-secret-of-at-least-thirty-two-bytes-long\n"), 0o600)
	sh("dpkg", "-i", deb)
	if b, _ := os.ReadFile("/etc/baton/baton.yaml"); !strings.HasSuffix(string(b), edited) {
		t.Error("reinstalling the package replaced the edited /etc/baton/baton.yaml")
	}
	sh("dpkg", "-r", "baton")
	if _, err := os.Stat("/usr/bin/baton"); err == nil {
		t.Error("dpkg -r left /usr/bin/baton")
	}
	if b, err := os.ReadFile("/etc/baton/baton.yaml"); err != nil || !strings.HasSuffix(string(b), edited) {
		t.Errorf("dpkg -r did not keep the config: %v", err)
	}
	if _, err := os.Stat("/etc/baton/secret"); err != nil {
		t.Error("dpkg -r removed the secret")
	}
	if s := installed(); !strings.HasPrefix(s, "rc") {
		t.Errorf("after dpkg -r the package is %q, want rc (config files kept)", s)
	}
	sh("dpkg", "-P", "baton")
	for _, f := range []string{"/etc/baton/baton.yaml", "/etc/baton/secret"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("dpkg -P left %s", f)
		}
	}

	if _, err := exec.LookPath("lintian"); err != nil {
		t.Log("*** lintian not installed: the .deb was not linted (scripts/test installs it as root) ***")
		return
	}
	// --allow-root: lintian only reads the package.
	lint := time.Now()
	defer func() { t.Logf("lintian took %v", time.Since(lint).Round(time.Millisecond)) }()
	out, err := exec.Command("lintian", "--allow-root", "--fail-on", "error,warning", deb).CombinedOutput()
	if err != nil {
		t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
	}
	t.Logf("package test took %v", time.Since(start).Round(time.Millisecond))
}

// saveDir records whether dir exists and its owner and mode, and returns a
// func that puts them back (removing dir if it did not exist and is empty).
func saveDir(t *testing.T, dir string) func() {
	st, err := os.Stat(dir)
	if err != nil {
		return func() { os.Remove(dir) }
	}
	sys := st.Sys().(*syscall.Stat_t)
	return func() {
		os.Chown(dir, int(sys.Uid), int(sys.Gid))
		os.Chmod(dir, st.Mode().Perm())
	}
}
