package pgtest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Each URL is its own empty database on a working server.
func TestURLGivesSeparateDatabases(t *testing.T) {
	ctx := t.Context()
	a, b := pgtest.URL(t), pgtest.URL(t)
	if a == b {
		t.Fatalf("two tests share %s", a)
	}
	ca := connect(t, a)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	cb := connect(t, b)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("table created in one test's database is visible in another's")
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

const envChild = "PGTEST_CHILD"

// A test binary that dies without running Main (here: os.Exit from a test,
// as a panic or -timeout would) leaves no server running.
func TestNoServerOutlivesItsTestBinary(t *testing.T) {
	if os.Getenv(envChild) == "1" {
		// The child: start the server, say where it is, die abruptly.
		url := pgtest.URL(t)
		var pid int
		conn := connect(t, url)
		if err := conn.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		var dir string
		if err := conn.QueryRow(t.Context(), "SELECT current_setting('data_directory')").Scan(&dir); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("DATADIR %s\n", dir)
		os.Exit(3)
	}
	if os.Getenv(pgtest.EnvServer) != "" {
		t.Skipf("%s names a server: no throwaway server to check", pgtest.EnvServer)
	}
	pgtest.URL(t) // skips (or fails) like the child would when there is no PostgreSQL

	cmd := exec.Command(os.Args[0], "-test.run=^TestNoServerOutlivesItsTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=1")
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var dataDir string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "DATADIR "); ok {
			dataDir = d
		}
	}
	if dataDir == "" {
		t.Fatalf("child did not report its data directory:\n%s", out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(dataDir)) })
	raw, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		// The postmaster removes its pid file when it exits.
		return
	}
	pid, err := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	// The kernel signals the postmaster when the child dies; it then stops
	// its backends. Wait for that, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d still runs 30s after its test binary died", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
