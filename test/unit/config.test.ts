import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

const tls = { TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem' };
const files: Record<string, string> = { '/run/user': 'scanner-user\n', '/run/pass': 's3cr3t-from-file\n', '/run/ca.pem': '-----BEGIN CERTIFICATE-----\nx\n' };
const readFile = (p: string): string => {
  const v = files[p];
  if (v === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
  return v;
};

test('defaults are documented ones', () => {
  const c = parseConfig(tls);
  assert.equal(c.server.port, 8443);
  assert.equal(c.decision.rejectIfTimeout, true);
  assert.equal(c.decision.mode, 'enforce');
  assert.equal(c.decision.workloadMode, 'enforce');
  assert.deepEqual(c.decision.namespaceModes, ['enforce', 'warn', 'off']);
  assert.equal(c.rules.denyLatestTag, true);
  assert.deepEqual(c.rules.registryAllowlist, []);
  assert.deepEqual(c.exemptNamespaces, ['kube-system']);
  assert.deepEqual(c.cache, { maxEntries: 10_000, maxBytes: 32 * 1024 * 1024, passTtlMs: 3_600_000, failTtlMs: 300_000 });
  assert.equal(c.maxImagesPerReview, 64);
  assert.equal(c.scanner.maxNewScansPerRequest, 10);
  assert.equal(c.server.maxConnections, 512);
  // The review of a 3 MiB object as the API server writes it (`<` as \u003c; object and oldObject) fits.
  assert.equal(c.server.maxBodyBytes, 40 * 1024 * 1024);
  assert.equal(c.server.maxInflightBodyBytes, 96 * 1024 * 1024);
  assert.equal(c.scanner.maxScansPerNamespace, 20);
  assert.deepEqual(c.breakGlass, { users: [], groups: [], proofTtlMs: 86_400_000 });
  assert.deepEqual(c.deadline, { defaultTimeoutMs: 10_000, marginMs: 1_000 });
  assert.equal(c.scanner.url, 'http://localhost:8228/v1');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.scanner));
});

test('BREAK_GLASS_CONTROLLERS is refused: no controller is trusted by its identity', () => {
  assert.throws(() => parseConfig({ ...tls, BREAK_GLASS_CONTROLLERS: 'system:kube-controller-manager' }), /BREAK_GLASS_CONTROLLERS: removed/);
  const c = parseConfig({ ...tls, BREAK_GLASS_KEY_FILE: '/etc/scangate/glass/key', BREAK_GLASS_PROOF_TTL_S: '3600' });
  assert.equal(c.breakGlass.keyFile, '/etc/scangate/glass/key');
  assert.equal(c.breakGlass.proofTtlMs, 3_600_000);
  assert.throws(() => parseConfig({ ...tls, BREAK_GLASS_PROOF_TTL_S: '10' }), /BREAK_GLASS_PROOF_TTL_S/);
});

test('values, lists, flags and secret files', () => {
  const c = parseConfig(
    {
      ...tls,
      REJECT_IF_TIMEOUT: 'false',
      REGISTRY_ALLOWLIST: 'docker.io, quay.io,,localhost:5000',
      EXEMPT_NAMESPACES: 'kube-system,monitoring',
      POD_NAMESPACE: 'scangate',
      ANCHORE_CLI_USER_FILE: '/run/user',
      ANCHORE_CLI_PASS_FILE: '/run/pass',
      ANCHORE_CLI_PASS: 'ignored-because-file-wins',
      ANCHORE_CA_FILE: '/run/ca.pem',
      MODE: 'warn',
    },
    { port: '9443', host: '127.0.0.1' },
    readFile,
  );
  assert.equal(c.decision.rejectIfTimeout, false);
  assert.deepEqual(c.rules.registryAllowlist, ['docker.io', 'quay.io', 'localhost:5000']);
  assert.deepEqual(c.exemptNamespaces, ['kube-system', 'monitoring', 'scangate']);
  assert.equal(c.scanner.user, 'scanner-user');
  assert.equal(c.scanner.password, 's3cr3t-from-file');
  assert.ok(c.scanner.caPem?.startsWith('-----BEGIN CERTIFICATE-----'));
  assert.equal(c.server.port, 9443);
  assert.equal(c.server.host, '127.0.0.1');
  assert.equal(c.decision.mode, 'warn');
});

test('one error lists every problem and never echoes the password', () => {
  const err = (() => {
    try {
      parseConfig({
        REJECT_IF_TIMEOUT: 'maybe',
        PORT: '70000',
        MODE: 'audit',
        ANCHORE_CLI_URL: 'ftp://x',
        ANCHORE_CLI_PASS_FILE: '/missing',
        CACHE_MAX_ENTRIES: '0',
      }, {}, readFile);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof ConfigError, 'expected a ConfigError');
  const keys = err.problems.map((p) => p.split(':')[0]);
  assert.deepEqual(
    new Set(keys.map((k) => k?.split(' ')[0])),
    new Set(['ANCHORE_CLI_PASS_FILE', 'PORT', 'ANCHORE_CLI_URL', 'CACHE_MAX_ENTRIES', 'MODE', 'REJECT_IF_TIMEOUT', 'TLS_CERT_FILE']),
  );
  assert.match(err.message, /REJECT_IF_TIMEOUT: expected true or false/);
});

test('TLS is required unless plain HTTP is asked for explicitly', () => {
  assert.throws(() => parseConfig({}), (e: unknown) => e instanceof ConfigError && /TLS_CERT_FILE and TLS_KEY_FILE/.test(e.message));
  assert.equal(parseConfig({}, { insecureHttp: true }).server.insecureHttp, true);
  assert.equal(parseConfig({}, { serving: false }).server.insecureHttp, false);
});

test('contradictory TLS settings for the scanner are refused', () => {
  assert.throws(
    () => parseConfig({ ...tls, ANCHORE_INSECURE_SKIP_TLS_VERIFY: 'true', ANCHORE_CA_FILE: '/run/ca.pem' }, {}, readFile),
    /contradict/,
  );
});

test('WORKLOAD_MODE and NAMESPACE_MODES', () => {
  const c = parseConfig({ ...tls, WORKLOAD_MODE: 'warn', NAMESPACE_MODES: 'enforce, off,enforce' });
  assert.equal(c.decision.workloadMode, 'warn');
  assert.deepEqual(c.decision.namespaceModes, ['enforce', 'off']);
  assert.deepEqual(parseConfig({ ...tls, NAMESPACE_MODES: '' }).decision.namespaceModes, []);
  assert.throws(
    () => parseConfig({ ...tls, WORKLOAD_MODE: 'audit', NAMESPACE_MODES: 'enforce,audit' }),
    (e: unknown) => e instanceof ConfigError && /WORKLOAD_MODE: expected enforce or warn/.test(e.message) && /NAMESPACE_MODES: expected a comma list of enforce, warn, off/.test(e.message),
  );
});
