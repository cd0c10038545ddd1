// Starts the real parleyd binary for the SDK's integration tests and the
// browser tests. PARLEY_BIN names a built binary (the Go test wrapper in
// internal/jstest sets it); without it the binary is built once with
// `go build` from the repository.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readdirSync, renameSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let built;

/**
 * The parleyd binary: PARLEY_BIN, or one built now. Under `node --test`
 * (NODE_TEST_CONTEXT set) the test files of one run are child processes
 * of one runner, so the binary is built once per run and shared through
 * a directory named after the runner's pid (a build takes seconds even
 * with Go's cache); such directories of runners that have exited are
 * removed. Run directly, a file builds its own, once per process.
 */
export function parleydBin() {
  if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
  if (built) return built;
  if (!process.env.NODE_TEST_CONTEXT) {
    const dir = mkdtempSync(join(tmpdir(), "parleyd-bin-"));
    built = join(dir, "parleyd");
    execFileSync("go", ["build", "-o", built, "./cmd/parleyd"], { cwd: repo, stdio: "inherit" });
    return built;
  }
  const prefix = "parleyd-bin-run-";
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || pid === process.ppid || alive(pid)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
  const dir = join(tmpdir(), prefix + process.ppid);
  const bin = join(dir, "parleyd");
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    // Build beside it and rename: a concurrent file sees the whole binary or none.
    const tmp = join(dir, `parleyd.${process.pid}.tmp`);
    execFileSync("go", ["build", "-o", tmp, "./cmd/parleyd"], { cwd: repo, stdio: "inherit" });
    renameSync(tmp, bin);
  }
  built = bin;
  return built;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/**
 * Starts parleyd on 127.0.0.1 (a free port, kept across restarts) with a
 * fresh data directory. env adds environment variables (PARLEY_*), args
 * adds flags. Returns a handle: base (http://127.0.0.1:PORT), logs(),
 * pid (of the running process: freeze it with SIGSTOP, thaw with SIGCONT),
 * kill() (SIGKILL, as a crash), stop() (SIGTERM), restart() (kill, then
 * start on the same port and data), start() after a stop, and cleanup().
 */
export async function startParleyd({ env = {}, args = [] } = {}) {
  const data = mkdtempSync(join(tmpdir(), "parleyd-data-"));
  const bin = parleydBin();
  let listen = "127.0.0.1:0";
  let child = null;
  let exited = null;
  let logs = [];
  const handle = {
    base: "",
    data,
    logs: () => logs.join("\n"),
    get running() { return child !== null; },
    /** The running process's pid (undefined when stopped), e.g. for SIGSTOP. */
    get pid() { return child ? child.pid : undefined; },
    async start() {
      if (child) throw new Error("parleyd is running");
      child = spawn(bin, ["--listen", listen, "--data", data, ...args], {
        env: {
          ...process.env,
          PARLEY_MESSAGE_REQUESTS: "off",
          PARLEY_STRANGER_ADDS: "0",
          ...env,
        },
        stdio: ["ignore", "ignore", "pipe"],
      });
      const proc = child;
      exited = new Promise((res) => proc.once("exit", () => { if (child === proc) child = null; res(); }));
      const rl = createInterface({ input: proc.stderr });
      const addr = await new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error("parleyd did not listen within 60 s:\n" + handle.logs())), 60000);
        rl.on("line", (line) => {
          if (logs.length < 20000) logs.push(line);
          try {
            const rec = JSON.parse(line);
            if (rec.msg === "parleyd listening") { clearTimeout(timer); res(rec.scheme + "://" + rec.addr); }
          } catch { /* not JSON */ }
        });
        proc.once("exit", (code) => { clearTimeout(timer); rej(new Error(`parleyd exited (${code}) before listening:\n` + handle.logs())); });
      });
      handle.base = addr;
      listen = new URL(addr).host;
      return handle;
    },
    async kill() {
      if (!child) return;
      child.kill("SIGKILL");
      await exited;
    },
    async stop(timeoutMs = 10000) {
      if (!child) return;
      const proc = child;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(t);
    },
    async restart() {
      await handle.kill();
      return handle.start();
    },
    async cleanup() {
      await handle.kill();
      if (existsSync(data)) rmSync(data, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}
