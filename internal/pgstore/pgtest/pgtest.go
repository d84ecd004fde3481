// Package pgtest gives tests a fresh PostgreSQL database on a real server.
//
// If INVITEBOT_TEST_POSTGRES names a server (a postgres:// URL of a role
// that may create databases), every test gets a new database there.
// Otherwise the first test that asks starts a throwaway server from the
// PostgreSQL binaries installed on the machine (pg_config --bindir,
// /usr/lib/postgresql/*/bin, or initdb on PATH): initdb into a temporary
// directory and postgres listening only on a unix socket in it, run as the
// postgres user when the test runs as root (initdb refuses root). The
// server lives as long as the test binary: Main stops it and removes its
// directory, and the kernel stops it if the binary dies first.
//
// Without binaries and without INVITEBOT_TEST_POSTGRES a test that asks for
// a database is skipped and says why, unless INVITEBOT_REQUIRE_POSTGRES=1,
// in which case it fails (CI sets it so the PostgreSQL tests cannot be
// skipped silently).
//
// A package that uses pgtest calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The environment variables pgtest reads.
const (
	// EnvServer names an existing server to create test databases on.
	EnvServer = "INVITEBOT_TEST_POSTGRES"
	// EnvRequire turns "no PostgreSQL here" from a skip into a failure.
	EnvRequire = "INVITEBOT_REQUIRE_POSTGRES"
)

// dirPrefix names the throwaway servers' directories, so a later run can
// remove those whose test binary was killed before Main could.
const dirPrefix = "invitebot-pgtest-"

var (
	mainCalled atomic.Bool
	dbSeq      atomic.Int64

	mu     sync.Mutex
	srv    *server // the started server, or nil
	srvErr error   // why no server could be started (sticky)
	skip   string  // why PostgreSQL is unavailable (no binaries), sticky
)

// Main runs the tests and then stops the throwaway server, if one was
// started, and removes its directory. Use it in TestMain.
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		srv = nil
	}
	return code
}

// URL returns the postgres:// URL of a new, empty database that is dropped
// when t ends. It skips or fails t when no server is available (see the
// package comment).
func URL(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main (it stops the server)")
	}
	admin, err := adminURL()
	if err != nil {
		if errors.Is(err, errNoBinaries) {
			if os.Getenv(EnvRequire) == "1" {
				t.Fatalf("pgtest: %v, and %s=1", err, EnvRequire)
			}
			t.Skipf("pgtest: %v (set %s or install PostgreSQL to run this test)", err, EnvServer)
		}
		t.Fatalf("pgtest: %v", err)
	}
	name := fmt.Sprintf("invitebot_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

var errNoBinaries = errors.New("no PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)")

// adminURL returns the URL of a maintenance database on the server the
// tests use, starting the throwaway server on the first call.
func adminURL() (string, error) {
	if s := os.Getenv(EnvServer); s != "" {
		return s, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		return srv.url, nil
	}
	if skip != "" {
		return "", fmt.Errorf("%w", errNoBinaries)
	}
	if srvErr != nil {
		return "", srvErr
	}
	bin, err := findBinaries()
	if err != nil {
		skip = err.Error()
		return "", err
	}
	s, err := start(bin)
	if err != nil {
		srvErr = fmt.Errorf("start PostgreSQL from %s: %w", bin, err)
		return "", srvErr
	}
	srv = s
	return s.url, nil
}

// findBinaries returns the directory holding initdb and postgres.
func findBinaries() (string, error) {
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	dirs = append(dirs, found...)
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errNoBinaries
}

// version is the major version in /usr/lib/postgresql/N/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

type server struct {
	dir  string
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the postmaster has exited
	log  *bytes.Buffer
}

// start runs initdb and postgres in a new temporary directory.
func start(bin string) (_ *server, err error) {
	removeStale()
	cred, parent, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, dirPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	s := &server{dir: dir, done: make(chan struct{}), log: new(bytes.Buffer)}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir,
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB")
	s.cmd.Stdout = &lockedWriter{w: s.log}
	s.cmd.Stderr = s.cmd.Stdout
	// SIGQUIT (immediate shutdown) reaches the postmaster when the thread
	// that started it dies, so a test binary that is killed, panics or
	// times out leaves no server behind. Pdeathsig follows the creating
	// thread, not the process: the thread is locked and kept until the
	// postmaster exits.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	s.url = (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "sslmode": {"disable"}}.Encode()}).String()
	if err := s.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady connects until the server accepts connections or exits.
func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.url)
		cancel()
		if err == nil {
			return conn.Close(context.Background())
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited: %s", s.output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %v: %s", limit, err, s.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) output() string {
	w := s.cmd.Stdout.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return s.log.String()
}

// stop shuts the server down (fast shutdown, then immediate, then kill)
// and removes its directory.
func (s *server) stop() error {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		_ = s.cmd.Process.Signal(sig)
		select {
		case <-s.done:
			return os.RemoveAll(s.dir)
		case <-time.After(10 * time.Second):
		}
	}
	return fmt.Errorf("postgres (pid %d) did not exit; left %s", s.cmd.Process.Pid, s.dir)
}

// runAs returns the credential to run initdb and postgres with (nil: as
// this process) and the directory to create the server's directory in.
func runAs() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, os.TempDir(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, "", fmt.Errorf("running as root, and initdb refuses root: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", err
	}
	// The postgres user must reach the directory: /tmp, not a TMPDIR
	// that may sit in root's home.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, "/tmp", nil
}

// removeStale removes the directories of throwaway servers whose test
// binary died before Main ran (their postmaster died with it).
func removeStale() {
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
		for _, d := range dirs {
			if alive(filepath.Join(d, "data", "postmaster.pid")) {
				continue
			}
			fi, err := os.Stat(d)
			// A directory younger than a minute may be another binary's
			// server still starting (initdb has not written the pid file).
			if err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
			_ = os.RemoveAll(d)
		}
	}
}

// alive reports whether the postmaster named by a postmaster.pid file runs.
func alive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
