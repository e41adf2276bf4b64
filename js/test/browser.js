// Test helpers: a static server for the built page (with the page's cross-origin isolation
// headers) and headless Chromium driven over the DevTools protocol on a pipe (no WebSocket).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const JS = resolve(fileURLToPath(import.meta.url), '..', '..');
export const REPO = resolve(JS, '..');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' };

/** The Python that runs onnxstyle: $ONNXSTYLE_PYTHON, the checkout's .venv, else python3. */
export function python() {
  if (process.env.ONNXSTYLE_PYTHON) return process.env.ONNXSTYLE_PYTHON;
  const venv = join(REPO, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** Run a Python module or script of the checkout; its stdout, or throw with its stderr. */
export function runPython(args, { timeout = 600_000 } = {}) {
  const env = { ...process.env, PYTHONPATH: [REPO, process.env.PYTHONPATH].filter(Boolean).join(':') };
  const r = spawnSync(python(), args, { cwd: REPO, env, encoding: 'utf8', timeout, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${python()} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error}`);
  return r.stdout;
}

/** Serve `roots` ({url prefix: folder}) on 127.0.0.1 with the page's headers; {url, close}. */
export async function serve(roots) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    for (const [prefix, dir] of Object.entries(roots)) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(dir, path.slice(prefix.length) || 'index.html'));
      if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) break;
      res.writeHead(200, { ...ISOLATION, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      return res.end(readFileSync(file));
    }
    res.writeHead(404, ISOLATION);
    res.end('not found');
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((ok) => server.close(ok)) };
}

/** $CHROMIUM (as given), else Debian's chromium or another on the usual paths; null: none. */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((c) => existsSync(c)) ?? null;
}

/** `promise`, or an Error(message()) after `ms` (the timer does not keep the process alive). */
function within(promise, ms, message) {
  let timer;
  const late = new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(message())), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Headless Chromium on a DevTools pipe; throws when it cannot start (CI must fail, not skip). */
export async function launch() {
  const exe = chromiumPath();
  if (!exe) throw new Error('Chromium not found (apt-get install chromium, or set CHROMIUM)');
  const profile = mkdtempSync(join(tmpdir(), 'onnxstyle-chromium-'));
  const child = spawn(exe, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-extensions', '--remote-debugging-pipe',
    `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const pending = new Map();
  const events = [];
  let buffer = '', id = 0, exited = null;
  child.stdio[4].on('data', (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
      if (msg.id && pending.has(msg.id)) {
        const { ok, fail } = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) fail(new Error(`${msg.error.message} ${msg.error.data ?? ''}`));
        else ok(msg.result);
      } else events.push(msg);
    }
  });
  const broken = (e) => {
    exited ??= `Chromium (${exe}) cannot start: ${e.message}`;
    for (const { fail } of pending.values()) fail(new Error(exited));
    pending.clear();
  };
  child.on('error', broken); // e.g. not executable
  child.stdio[3].on('error', broken); // EPIPE: it is gone
  child.on('exit', (code, signal) => {
    exited ??= `Chromium exited (${code ?? signal}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`;
    for (const { fail } of pending.values()) fail(new Error(exited));
    pending.clear();
  });
  const send = (method, params = {}, sessionId) => new Promise((ok, fail) => {
    if (exited) return fail(new Error(exited));
    const msg = { id: ++id, method, params, ...(sessionId ? { sessionId } : {}) };
    pending.set(msg.id, { ok, fail });
    child.stdio[3].write(`${JSON.stringify(msg)}\0`);
  });
  const version = await within(send('Browser.getVersion'), 60_000, () => `Chromium did not answer in 60 s: ${stderr.slice(-500)}`);

  async function open(url) {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    await send('Page.enable', {}, sessionId);
    await send('Runtime.enable', {}, sessionId);
    await send('Page.navigate', { url }, sessionId);
    const crashed = () => events.some((e) => e.sessionId === sessionId && e.method === 'Inspector.targetCrashed');
    const page = {
      async evaluate(expression, { timeout = 600_000 } = {}) {
        const r = await within(send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, sessionId),
          timeout, () => `page did not answer in ${timeout / 1000} s`);
        if (r.exceptionDetails) {
          throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        }
        return r.result.value;
      },
      async waitFor(expression, timeout = 120_000) {
        const t0 = Date.now();
        while (Date.now() - t0 < timeout) {
          if (crashed()) throw new Error('the page crashed');
          if (await page.evaluate(`Boolean(${expression})`, { timeout: 10_000 }).catch(() => false)) return;
          await new Promise((ok) => setTimeout(ok, 200));
        }
        throw new Error(`timed out waiting for ${expression}`);
      },
      async screenshot(width, height) {
        await send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
        const { data } = await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, sessionId);
        return Buffer.from(data, 'base64');
      },
      console: () => events.filter((e) => e.sessionId === sessionId && e.method === 'Runtime.consoleAPICalled')
        .map((e) => e.params.args.map((a) => a.value ?? a.description).join(' ')),
    };
    return page;
  }

  return {
    version: version.product,
    open,
    async close() {
      const gone = new Promise((ok) => (exited ? ok() : child.once('exit', ok)));
      await send('Browser.close').catch(() => {});
      await within(gone, 10_000, () => 'Chromium did not exit').catch(() => child.kill('SIGKILL'));
      rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
