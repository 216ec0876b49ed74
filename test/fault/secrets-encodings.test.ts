/**
 * Credentials in every spelling (issue 7, section 5). A scanner, or a proxy in front of it, that
 * echoes what it was sent is not hypothetical: error pages quote the Authorization header, Sysdig's
 * user is an API token that its messages may name, a gateway may quote the request URL. Here a
 * rewriting proxy on 127.0.0.1, between scangate and the simulator (v1 and v2), puts the credentials
 * into the scanner's answers in every spelling we could think of: raw, upper and lower case, the Basic
 * header value, base64 and base64url inside a longer encoded text, URL and form encoding, hex, JSON
 * escapes. Through a 400 message, a 404 message, a check status, stop-reason text and a malformed
 * body, no denial, audit annotation, warning or log line (LOG_LEVEL=trace) may carry any of it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ScannerSimulator } from '@scangate/simulator';
import { FAILING_IMAGE, PASSING_IMAGE, startSimulator } from '../helpers/fault-harness.js';
import { admissionReview, request, startWebhook, type Webhook } from '../helpers/harness.js';

// Characters that make every encoding differ from the raw text: space, '+', '/', '&', '"', '\', '%', non-ASCII.
const USER = 'Scanner.User-7f3a';
const PASS = 'Pa ss+/w&rd"\\%ü-2c9e41b7';

/** Independent of src/: what a leak could look like. Windows of 12 characters catch partial copies. */
function leakForms(): string[] {
  const raw = [USER, PASS, `${USER}:${PASS}`];
  const forms = new Set<string>();
  const b64 = (b: Buffer): string => b.toString('base64');
  for (const s of raw) {
    for (const v of [s, s.toUpperCase(), s.toLowerCase(), JSON.stringify(s).slice(1, -1)]) forms.add(v);
    const uri = encodeURIComponent(s);
    for (const v of [uri, uri.toLowerCase(), new URLSearchParams({ s }).toString().slice(2), Buffer.from(s).toString('hex')]) forms.add(v);
    for (let shift = 0; shift < 3; shift += 1) {
      // The base64 of the secret wherever it sits in a longer text: drop the groups it shares.
      const core = b64(Buffer.concat([Buffer.alloc(shift, 0x7a), Buffer.from(s)])).slice(shift === 0 ? 0 : 4, -4);
      forms.add(core);
      forms.add(core.replace(/\+/g, '-').replace(/\//g, '_'));
    }
  }
  const windows = new Set<string>();
  for (const f of forms) {
    if (f.length <= 12) windows.add(f);
    else for (let i = 0; i + 12 <= f.length; i += 1) windows.add(f.slice(i, i + 12));
  }
  return [...windows];
}
const LEAKS = leakForms();

function assertNoLeak(where: string, text: string): void {
  for (const leak of LEAKS) {
    const at = text.indexOf(leak);
    assert.equal(at, -1, `${where} carries a credential (${JSON.stringify(leak)}): ...${text.slice(Math.max(0, at - 60), at + 40)}...`);
  }
}

/** The credentials as a scanner or a proxy could echo them, in one text. */
function echoText(authorization: string): string {
  const basic = authorization.replace(/^Basic /, '');
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  return [
    `authorization: ${authorization}`,
    `account ${decoded.toUpperCase()} unknown`,
    `user=${encodeURIComponent(USER)}&password=${encodeURIComponent(PASS).toLowerCase()}`,
    new URLSearchParams({ user: USER, password: PASS }).toString(),
    `token ${Buffer.from(basic, 'base64').toString('base64url')}`,
    `blob ${Buffer.from(`{"password":"${PASS}"}`).toString('base64')}`,
    `hex ${Buffer.from(PASS).toString('hex')}`,
    `raw ${USER.toLowerCase()} / ${PASS}`,
  ].join('; ');
}

interface EchoProxy {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Forwards to the simulator and rewrites by the image tag scangate sent: `echo-400` and `echo-404`
 * get an error answer quoting the credentials, `echo-status` a check whose status is that text,
 * `echo-malformed` a 200 that is not JSON; every check answer has the CVE id replaced by the text.
 */
async function startEchoProxy(target: string): Promise<EchoProxy> {
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const path = req.url ?? '/';
        const seen = decodeURIComponent(path) + body;
        const echo = echoText(req.headers.authorization ?? '');
        const send = (status: number, text: string): void => {
          res.writeHead(status, { 'content-type': 'application/json' }).end(text);
        };
        const isCheck = (path.split('?')[0] ?? '').endsWith('/check');
        if (seen.includes('echo-400') && req.method === 'POST') return send(400, JSON.stringify({ message: echo, httpcode: 400, detail: {} }));
        if (seen.includes('echo-malformed') && req.method === 'POST') return send(200, `<html>${echo}</html>`);
        if (seen.includes('echo-404') && isCheck) return send(404, JSON.stringify({ message: `no such image: ${echo}`, httpcode: 404, detail: {} }));
        const answer = await fetch(new URL(path, upstream.origin), {
          method: req.method ?? 'GET',
          headers: { ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}), 'content-type': 'application/json' },
          ...(req.method === 'POST' ? { body } : {}),
        });
        let text = await answer.text();
        if (isCheck) {
          const inJson = JSON.stringify(echo).slice(1, -1);
          text = text.replaceAll('CVE-2017-5638', inJson);
          if (seen.includes('echo-status')) text = text.replace(/"status":\s*"pass"/, `"status": "${inJson}"`);
        }
        send(answer.status, text);
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const IMAGES = {
  refused: 'docker.io/library/nginx:echo-400',
  notFound: 'docker.io/library/nginx:echo-404',
  status: 'docker.io/library/nginx:echo-status',
  malformed: 'docker.io/library/nginx:echo-malformed',
};

for (const api of ['v1', 'v2'] as const) {
  describe(`credentials in the scanner's answers, every spelling (API ${api})`, () => {
    let sim: ScannerSimulator | undefined;
    let proxy: EchoProxy | undefined;
    let webhook: Webhook;
    before(async () => {
      sim = await startSimulator({ user: USER, password: PASS, api });
      proxy = await startEchoProxy(sim.url);
      webhook = await startWebhook({
        ANCHORE_CLI_URL: `${proxy.url}/${api}`,
        ANCHORE_CLI_USER: USER,
        ANCHORE_CLI_PASS: PASS,
        LOG_LEVEL: 'trace',
        SCANNER_POLL_INITIAL_MS: '20',
        SCANNER_RETRY_BUDGET_MS: '200',
      });
    });
    after(async () => {
      await webhook?.close();
      await proxy?.close();
      await sim?.close();
    });

    const admit = async (images: string[]): Promise<{ text: string; message: string }> => {
      const review = admissionReview({ containers: images });
      const r = await request(`${webhook.url}/validate?timeout=10s`, { method: 'POST', body: review.body });
      assert.equal(r.status, 200, r.text);
      return { text: r.text, message: String(r.json?.response?.status?.message ?? '') };
    };

    it('a failing image whose stop reasons quote the credentials: denied, the reasons shown as findings only', async () => {
      const { text, message } = await admit([FAILING_IMAGE]);
      assertNoLeak('denial', text);
      assert.match(message, /^Image failed policy check: docker\.io\/apache\/struts2:2\.3\.12/);
      // The stop rows reach the denial as findings in scangate's words (THREAT-MODEL I4): the scanner's
      // text, credentials and all, is not in it, redacted or not.
      assert.match(message, /\(container "c0"\): vulnerabilities\/package: CRITICAL/, message);
      assert.doesNotMatch(message, /\[redacted\]|Vulnerability found/, message);
    });

    it('a 400 whose message echoes the Authorization header: the denial names the refusal, not the secret', async () => {
      const { text, message } = await admit([IMAGES.refused]);
      assertNoLeak('denial', text);
      assert.match(message, /scanner refused add_image \(HTTP 400: .*\[redacted\]/);
    });

    it('a 404 on the check, a check status and a malformed body quoting the credentials', async () => {
      const cases: Array<[string, RegExp]> = [
        [IMAGES.notFound, /^Scanner error: .*scanner cannot evaluate the image \(HTTP 404: no such image: authorization: Basic \[redacted\]; account \[redacted\] unknown/],
        [IMAGES.status, /^Scanner error: .*scanner check status is "authorization: Basic \[redacted\];.* raw \[redacted\] \/ \[redacted\]", expected pass or fail/],
        [IMAGES.malformed, /^Scanner error: .*scanner answered add_image with malformed JSON/],
      ];
      for (const [image, expected] of cases) {
        const { text, message } = await admit([image]);
        assertNoLeak(`denial for ${image}`, text);
        assert.match(message, expected);
      }
      // The passing image still passes through the same proxy: the rewriting did not break the wire.
      const { text } = await admit([PASSING_IMAGE]);
      assert.match(text, /"allowed":true/);
    });

    it('no log line, at trace level, carries a credential', () => {
      assert.ok(webhook.logs.raw.length > 5, 'the log is not empty');
      webhook.logs.raw.forEach((line, i) => assertNoLeak(`log line ${i + 1}`, line));
    });
  });
}
