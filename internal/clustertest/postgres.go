package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresSettings are appended to the primary's postgresql.conf, and
// pg_basebackup copies them to the replica: small, local, and able to
// stream to a hot standby. The port and socket directory are given on the
// command line, since the two servers differ there.
const postgresSettings = `
# Written by internal/clustertest: a small private cluster for tests.
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
# A standby retries the primary every 200 ms (default 5 s), so it catches
# up soon after a test restarts the primary.
wal_retrieve_retry_interval = 200ms
log_line_prefix = '%m [%p] %q%u@%d '
`

// postgresHBA trusts every local and 127.0.0.1 connection, replication
// included: the servers listen nowhere else.
const postgresHBA = `# Written by internal/clustertest.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
`

// replicationSlot keeps the primary's WAL until the replica has it, so a
// replica that falls behind (the primary restarted, a slow machine) still
// catches up.
const replicationSlot = "clustertest_replica"

// pgInstallHint tells what to install when PostgreSQL is missing.
const pgInstallHint = "install Debian's postgresql package (initdb, postgres and pg_basebackup under /usr/lib/postgresql/VERSION/bin)"

// PostgresOptions says what StartPostgres starts. The zero value is one
// primary.
type PostgresOptions struct {
	// Replica adds a hot standby that streams from the primary.
	Replica bool
}

// Postgres is a private PostgreSQL cluster: a primary and, optionally, a
// streaming hot-standby replica, each on its own free port. Its methods
// fail the test on error and are for the test's goroutine.
type Postgres struct {
	tb      testing.TB
	primary *pgServer
	replica *pgServer // nil without PostgresOptions.Replica
}

// pgServer is one postgres process on a data directory.
type pgServer struct {
	port int
	proc process
}

func (s *pgServer) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// StartPostgres creates a cluster with initdb, starts it, and with
// opts.Replica adds a replica made by pg_basebackup -R, returning once the
// replica streams. When the test ends, the servers stop (immediate
// shutdown) and their directories are removed. Run as root, PostgreSQL's
// programs run as the postgres user, which must exist.
func StartPostgres(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	binDir, err := postgresBinDir()
	if err != nil {
		missing(tb, "PostgreSQL", err, pgInstallHint)
		return nil
	}
	cred, err := postgresCredential()
	if err != nil {
		missing(tb, "the postgres user", err, pgInstallHint)
		return nil
	}
	p := &Postgres{tb: tb}
	if err := p.start(binDir, cred, opts); err != nil {
		tb.Fatalf("clustertest: starting PostgreSQL: %v", err)
	}
	return p
}

func (p *Postgres) start(binDir string, cred *syscall.Credential, opts PostgresOptions) error {
	p.tb.Helper()
	base, err := workDir(p.tb, "postgres")
	if err != nil {
		return err
	}
	logs := []string{filepath.Join(base, "primary.log"), filepath.Join(base, "replica.log")}
	p.tb.Cleanup(func() {
		p.stopAll()
		logTailsIfFailed(p.tb, logs...)
	})

	// The socket directory is ours, so no server touches /var/run/postgresql.
	socketDir := filepath.Join(base, "run")
	primaryDir := filepath.Join(base, "primary")
	for _, dir := range []string{socketDir, primaryDir} {
		if err := mkdirOwned(dir, cred); err != nil {
			return err
		}
	}
	env := postgresEnv(base)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := runLogged(ctx, logs[0], base, env, cred, filepath.Join(binDir, "initdb"),
		"-D", primaryDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(primaryDir, "postgresql.conf"), postgresSettings); err != nil {
		return err
	}
	if err := writeFileOwned(filepath.Join(primaryDir, "pg_hba.conf"), postgresHBA, cred); err != nil {
		return err
	}
	if p.primary, err = newPGServer("postgres primary", binDir, primaryDir, socketDir, logs[0], base, env, cred); err != nil {
		return err
	}
	if err := p.primary.start(ctx); err != nil {
		return err
	}
	if !opts.Replica {
		return nil
	}

	replicaDir := filepath.Join(base, "replica")
	if err := mkdirOwned(replicaDir, cred); err != nil {
		return err
	}
	// -R writes standby.signal and primary_conninfo; -C -S make the slot.
	if err := runLogged(ctx, logs[1], base, env, cred, filepath.Join(binDir, "pg_basebackup"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.primary.port), "-U", "postgres", "-D", replicaDir,
		"-R", "-X", "stream", "-C", "-S", replicationSlot, "--checkpoint=fast", "--no-sync"); err != nil {
		return err
	}
	if p.replica, err = newPGServer("postgres replica", binDir, replicaDir, socketDir, logs[1], base, env, cred); err != nil {
		return err
	}
	if err := p.replica.start(ctx); err != nil {
		return err
	}
	return p.replica.proc.waitReady(ctx, p.streaming)
}

func newPGServer(name, binDir, dataDir, socketDir, logPath, workingDir string, env []string, cred *syscall.Credential) (*pgServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return &pgServer{port: port, proc: process{
		name:    name,
		path:    filepath.Join(binDir, "postgres"),
		args:    []string{"-D", dataDir, "-p", strconv.Itoa(port), "-k", socketDir},
		dir:     workingDir,
		env:     env,
		cred:    cred,
		logPath: logPath,
	}}, nil
}

// start runs the server and waits until it accepts connections (a standby
// does once it is consistent).
func (s *pgServer) start(ctx context.Context) error {
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.proc.waitReady(ctx, func(ctx context.Context) error {
		return query(ctx, s.dsn(), "SELECT 1", nil)
	})
}

// streaming tells whether the primary sees the replica streaming and the
// replica knows it is one.
func (p *Postgres) streaming(ctx context.Context) error {
	var streaming int
	if err := query(ctx, p.primary.dsn(), "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", nil, &streaming); err != nil {
		return err
	}
	if streaming == 0 {
		return errors.New("the primary has no streaming replica yet")
	}
	var inRecovery bool
	if err := query(ctx, p.replica.dsn(), "SELECT pg_is_in_recovery()", nil, &inRecovery); err != nil {
		return err
	}
	if !inRecovery {
		return errors.New("the replica is not in recovery: it is no standby")
	}
	return nil
}

// DSN is the primary's connection string, for user postgres (trusted, no
// password) and database postgres.
func (p *Postgres) DSN() string { return p.primary.dsn() }

// ReplicaDSN is the replica's connection string, "" without a replica. The
// replica is read-only and may lag: see WaitReplica.
func (p *Postgres) ReplicaDSN() string {
	if p.replica == nil {
		return ""
	}
	return p.replica.dsn()
}

// Stop shuts the primary down as `pg_ctl stop -m fast` does (SIGINT:
// sessions are cut, a checkpoint is written) and waits for it to exit. The
// replica keeps running and reconnects once Start is called.
func (p *Postgres) Stop() {
	p.tb.Helper()
	if err := p.primary.proc.stop(syscall.SIGINT, time.Minute); err != nil {
		p.tb.Fatalf("clustertest: stopping PostgreSQL: %v", err)
	}
}

// Start starts a stopped primary again on the same port and data, and
// waits until it accepts connections.
func (p *Postgres) Start() {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.primary.start(ctx); err != nil {
		p.tb.Fatalf("clustertest: starting PostgreSQL again: %v", err)
	}
}

// WaitReplica waits until the replica has replayed all the WAL that the
// primary had written when it was called, so a read there sees every
// earlier commit. It fails the test when ctx ends first or there is no
// replica.
func (p *Postgres) WaitReplica(ctx context.Context) {
	p.tb.Helper()
	if p.replica == nil {
		p.tb.Fatal("clustertest: WaitReplica needs PostgresOptions.Replica")
	}
	if err := p.waitReplica(ctx); err != nil {
		p.tb.Fatalf("clustertest: waiting for the replica: %v", err)
	}
}

func (p *Postgres) waitReplica(ctx context.Context) error {
	var written string
	if err := query(ctx, p.primary.dsn(), "SELECT pg_current_wal_lsn()::text", nil, &written); err != nil {
		return fmt.Errorf("reading the primary's WAL position: %w", err)
	}
	return p.replica.proc.waitReady(ctx, func(ctx context.Context) error {
		var replayed string
		var caughtUp bool
		err := query(ctx, p.replica.dsn(),
			"SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)",
			[]any{written}, &replayed, &caughtUp)
		if err != nil {
			return err
		}
		if !caughtUp {
			return fmt.Errorf("replayed up to %q, the primary had written up to %s", replayed, written)
		}
		return nil
	})
}

// stopAll ends both servers at once (immediate shutdown: no checkpoint,
// the data is thrown away next).
func (p *Postgres) stopAll() {
	for _, s := range []*pgServer{p.replica, p.primary} {
		if s == nil {
			continue
		}
		if err := s.proc.stop(syscall.SIGQUIT, 30*time.Second); err != nil {
			p.tb.Errorf("clustertest: %v", err)
		}
	}
}

// query runs sql on a new connection to dsn and scans the one row it
// returns into dest (nothing when dest is empty). A connection per query
// keeps the helpers free of state across server restarts.
func query(ctx context.Context, dsn, sql string, args []any, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if len(dest) == 0 {
		_, err = conn.Exec(ctx, sql, args...)
		return err
	}
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// postgresBinDir finds PostgreSQL's server programs: the directory initdb
// on PATH links to (Debian's /usr/lib/postgresql/VERSION/bin), else the
// newest /usr/lib/postgresql/VERSION/bin.
func postgresBinDir() (string, error) {
	var candidates []string
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int {
		return pgVersion(b) - pgVersion(a) // newest first
	})
	candidates = append(candidates, versions...)
	for _, dir := range candidates {
		if hasPrograms(dir, "initdb", "postgres", "pg_basebackup") {
			return dir, nil
		}
	}
	return "", errors.New("no directory with initdb, postgres and pg_basebackup on PATH or under /usr/lib/postgresql")
}

// pgVersion is the major version in /usr/lib/postgresql/VERSION/bin, 0 if
// it is not a number.
func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func hasPrograms(dir string, names ...string) bool {
	for _, name := range names {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// postgresCredential is whom PostgreSQL's programs run as: initdb and
// postgres refuse root, so as root they run as the postgres user (nil
// means the test's own user).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as user postgres: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres: %w", err)
	}
	// Groups is empty: the child drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// postgresEnv is the environment of PostgreSQL's programs: the test's,
// without PG* variables (PGHOST, PGPORT, PGDATA... set for other tests
// would redirect them), with HOME in our directory (root's is closed to
// the postgres user).
func postgresEnv(home string) []string {
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// mkdirOwned makes a 0700 directory owned by cred's user, as PostgreSQL
// wants its data directory.
func mkdirOwned(dir string, cred *syscall.Credential) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	return chown(dir, cred)
}

// writeFileOwned replaces a file in a data directory, keeping it owned by
// cred's user and readable by no one else.
func writeFileOwned(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return chown(path, cred)
}

func appendFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("appending to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	return nil
}

func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("giving %s to the postgres user: %w", path, err)
	}
	return nil
}
