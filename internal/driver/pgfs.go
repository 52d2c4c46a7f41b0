package driver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// checkDataDir makes sure the os user can own and reach the data dir, creating it when missing. Errors name the
// path and the fix; PostgreSQL's own messages for these cases come late and from the server log.
func (p *Postgres) checkDataDir() error {
	for dir := filepath.Dir(p.dataDir); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err == nil && !p.canSearch(fi) {
			return fmt.Errorf("%w: os_user %s cannot reach data dir %s: %s is mode %v owned by %s; fix: chmod o+x %s, or move driver.data_dir",
				ErrDataDirOwner, p.user.name, p.dataDir, dir, fi.Mode().Perm(), ownerName(fi), dir)
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	fi, err := os.Stat(p.dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
			return fmt.Errorf("%w: cannot create data dir %s: %v", ErrDataDirOwner, p.dataDir, err)
		}
		return p.user.chown(p.dataDir)
	}
	if err != nil {
		return fmt.Errorf("%w: data dir %s: %v", ErrDataDirOwner, p.dataDir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: data dir %s is not a directory; point driver.data_dir at a directory", ErrDataDirOwner, p.dataDir)
	}
	if uid := fileUID(fi); uid != p.user.uid {
		return fmt.Errorf("%w: data dir %s is owned by %s, not by os_user %s (uid %d), and PostgreSQL runs only on a data dir its user owns; fix: chown -R %s: %s if it belongs to this cluster, or set driver.os_user to its owner, or point driver.data_dir elsewhere",
			ErrDataDirOwner, p.dataDir, ownerName(fi), p.user.name, p.user.uid, p.user.name, p.dataDir)
	}
	// PostgreSQL refuses a data dir others can read (0700, or 0750 for group access).
	if fi.Mode().Perm()&0o027 != 0 {
		if err := os.Chmod(p.dataDir, 0o700); err != nil {
			return fmt.Errorf("%w: data dir %s is mode %v and PostgreSQL needs 0700: %v", ErrDataDirOwner, p.dataDir, fi.Mode().Perm(), err)
		}
	}
	return nil
}

// canSearch reports whether the os user may traverse directory fi.
func (p *Postgres) canSearch(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || p.user.uid == 0 {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == p.user.uid:
		return perm&0o100 != 0
	case p.user.inGroup(st.Gid):
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

func fileUID(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

func ownerName(fi fs.FileInfo) string {
	uid := fileUID(fi)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// hasCluster reports whether the data dir holds a cluster (PG_VERSION), and checks its major version.
func (p *Postgres) hasCluster() (bool, error) {
	b, err := os.ReadFile(filepath.Join(p.dataDir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		entries, _ := os.ReadDir(p.dataDir)
		if len(entries) > 0 {
			return false, fmt.Errorf("%w: data dir %s is not empty but holds no PostgreSQL cluster (no PG_VERSION); empty it, or point driver.data_dir at a cluster or an empty directory",
				ErrConfig, p.dataDir)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("data dir %s: %w", p.dataDir, err)
	}
	if v := strings.TrimSpace(string(b)); v != strconv.Itoa(p.major) {
		return false, fmt.Errorf("%w: data dir %s holds a PostgreSQL %s cluster but driver.bin_dir %s is PostgreSQL %d; point bin_dir at the %s binaries or upgrade the cluster (pg_upgrade)",
			ErrConfig, p.dataDir, v, p.binDir, p.major, v)
	}
	return true, nil
}

// emptyDataDir removes everything in the data dir, keeping the directory (a mount point, perhaps).
func (p *Postgres) emptyDataDir() error {
	entries, err := os.ReadDir(p.dataDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(p.dataDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// postmasterPID returns the running postmaster's pid, or 0.
func (p *Postgres) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(p.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0 // stale pid file
	}
	// A reused pid belongs to some other program.
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && !bytes.HasPrefix(comm, []byte("postgres")) && !bytes.HasPrefix(comm, []byte("postmaster")) {
		return 0
	}
	return pid
}

func (p *Postgres) running() bool { return p.postmasterPID() != 0 }

// alive reports whether pid runs. A zombie does not: a postmaster that pg_ctl started is an orphan, and whoever
// inherits it may reap it only seconds later.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

// waitExit waits until pid is gone.
func waitExit(ctx context.Context, pid int) error {
	for {
		if !alive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postmaster %d still running: %w", pid, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// controlPosition reads the position of a stopped cluster from pg_control: the later of the last checkpoint and the
// minimum recovery point. It is a lower bound of the WAL on disk.
func (p *Postgres) controlPosition(ctx context.Context) (Position, error) {
	res, err := run(ctx, p.user, 10*time.Second, append(baseEnv(p.user), "LC_ALL=C"), p.bin("pg_controldata"), "-D", p.dataDir)
	if err != nil {
		return Position{}, fmt.Errorf("pg_controldata %s: %w", p.dataDir, err)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(res.stdout))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	read := func(lsnKey, tliKey string) Position {
		lsn, _ := ParseLSN(fields[lsnKey])
		tli, _ := strconv.ParseUint(fields[tliKey], 10, 32)
		return Position{Timeline: uint32(tli), LSN: lsn}
	}
	pos := read("Latest checkpoint location", "Latest checkpoint's TimeLineID")
	if rec := read("Minimum recovery ending location", "Min recovery ending loc's timeline"); rec.LSN != 0 && rec.Compare(pos) > 0 {
		pos = rec
	}
	return pos, nil
}

// logTail returns the last lines of the server log, for start-up errors.
func (p *Postgres) logTail(n int) string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// tempPassfile writes a libpq password file for cred, readable only by the os user; remove it when done.
func (p *Postgres) tempPassfile(c credential, password string) (string, func(), error) {
	esc := func(s string) string { return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s) }
	f, err := os.CreateTemp("", "baton-pgpass-*")
	if err != nil {
		return "", nil, err
	}
	name := f.Name()
	cleanup := func() { os.Remove(name) }
	_, err = f.WriteString("*:*:*:" + esc(c.user) + ":" + esc(password) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.user.chown(name)
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return name, cleanup, nil
}
