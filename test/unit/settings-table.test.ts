/**
 * The settings table (src/settings.ts) is the one source of every setting: the README's table and
 * deploy.sh's key list are generated from it (`make settings`), and the chart's values, its values
 * schema and its ConfigMap must name each setting the table binds to them, with the same default and
 * bounds. Each test fails when a copy drifts from the table.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { DEFAULTS, parseConfig } from '../../src/config.js';
import { GENERATED, SETTINGS, SETTING_NAMES, chartValueOf, deployShellBlock, generatedBlock, settingsMarkdown, type Setting } from '../../src/settings.js';

const root = new URL('../../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');
const rows = SETTING_NAMES.map((name) => [name, SETTINGS[name] as Setting] as const);
const chartRows = rows.flatMap(([name, row]) => (row.chart.via === 'configmap' ? [{ name, row, value: row.chart.value }] : []));

function at(object: unknown, path: string): unknown {
  let value = object;
  for (const key of path.split('.')) {
    if (typeof value !== 'object' || value === null || !(key in value)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

test('README: the settings table is the one generated from src/settings.ts (make settings)', () => {
  const block = generatedBlock(read('README.md'), GENERATED.readme);
  assert.ok(block !== undefined, 'README.md has the settings-table markers');
  assert.equal(block, settingsMarkdown(), 'README.md settings table differs from src/settings.ts: run `make settings`');
});

test('deploy.sh: CONFIG_KEYS and the chart value of each are the ones generated from src/settings.ts', () => {
  const text = read('scripts/deploy.sh');
  const block = generatedBlock(text, GENERATED.deploy);
  assert.ok(block !== undefined, 'deploy.sh has the settings markers');
  assert.equal(block, deployShellBlock(), 'deploy.sh CONFIG_KEYS differ from src/settings.ts: run `make settings`');
  // Nothing outside the block adds a scangate setting of its own.
  const extra = [...text.matchAll(/CONFIG_KEYS\+=\(([^)]*)\)/g)].flatMap((m) => (m[1] ?? '').trim().split(/\s+/));
  assert.deepEqual(extra, ['PIN_WEBHOOK_TIMEOUT_SECONDS']);
});

test("chart values.yaml: every setting bound to the chart is there with scangate's default (or the chart's stated one)", () => {
  const values: unknown = parseYaml(read('charts/scangate/values.yaml'));
  for (const [name, row] of rows) {
    if (row.chart.via === 'none' || row.chart.value === undefined) continue;
    const value = at(values, row.chart.value);
    assert.notEqual(value, undefined, `${name}: values.yaml has no ${row.chart.value}`);
    assert.deepEqual(value, chartValueOf(row), `${name}: values.yaml ${row.chart.value}`);
  }
  // A removed setting leaves no value behind.
  assert.equal(at(values, 'breakGlass.controllers'), undefined);
});

test('chart values.schema.json: every chart-bound setting has a property, ints with the same bounds', () => {
  const schema = JSON.parse(read('charts/scangate/values.schema.json')) as unknown;
  for (const { name, row, value } of chartRows) {
    const property = at(schema, `properties.${value.split('.').join('.properties.')}`) as Record<string, unknown> | undefined;
    assert.ok(property !== undefined, `${name}: values.schema.json has no ${value}`);
    if (row.kind === 'int') {
      assert.equal(property['type'], 'integer', `${name}: ${value} is an integer`);
      assert.equal(property['minimum'], row.min, `${name}: ${value} minimum`);
      assert.equal(property['maximum'], row.max, `${name}: ${value} maximum`);
    } else if (row.kind === 'bool') assert.equal(property['type'], 'boolean', `${name}: ${value}`);
    else if (row.kind === 'list') assert.equal(property['type'], 'array', `${name}: ${value}`);
  }
});

test("chart ConfigMap (scangate.settings in _helpers.tpl): exactly the chart-bound settings, each from the table's value", () => {
  const helpers = read('charts/scangate/templates/_helpers.tpl');
  const from = helpers.indexOf('{{- define "scangate.settings" -}}');
  const to = helpers.indexOf('{{- end -}}', helpers.indexOf('$s | toJson', from));
  assert.ok(from >= 0 && to > from, '_helpers.tpl defines scangate.settings');
  const written = new Map<string, string | undefined>();
  for (const m of helpers.slice(from, to).matchAll(/"([A-Z][A-Z0-9_]*)"[ )]*([^\n]*)/g)) {
    const name = m[1] ?? '';
    written.set(name, /\$v\.([A-Za-z0-9_.]+)/.exec(m[2] ?? '')?.[1]);
  }
  for (const name of written.keys()) assert.ok(name in SETTINGS, `_helpers.tpl writes ${name}, which is not a setting`);
  for (const { name, value } of chartRows) {
    assert.ok(written.has(name), `_helpers.tpl does not write ${name} (values.yaml ${value})`);
    const path = written.get(name);
    // EXEMPT_NAMESPACES is built by a helper of its own (the release namespace added).
    if (path !== undefined) assert.equal(path, value, `${name}: _helpers.tpl reads $v.${path}, the table says ${value}`);
  }
  const unbound = [...written.keys()].filter((name) => !chartRows.some((r) => r.name === name));
  // The scanner's CA path is set by the chart when it mounts the CA; it has no value of its own.
  assert.deepEqual(unbound, ['ANCHORE_CA_FILE']);
});

test('the defaults of the table parse, and the settings the lead relies on are where Config says', () => {
  assert.equal(DEFAULTS.MAX_BODY_BYTES, String(40 * 1024 * 1024));
  assert.equal(DEFAULTS.MAX_INFLIGHT_BODY_BYTES, String(96 * 1024 * 1024));
  assert.ok(!('BREAK_GLASS_CONTROLLERS' in SETTINGS));
  const c = parseConfig({ TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k' });
  assert.deepEqual(c.breakGlass, { users: [], groups: [], proofTtlMs: 86_400_000 });
  assert.equal(c.scanner.maxScansPerNamespace, 20);
  assert.equal(c.scanner.retryBackoffMs, 250);
  const set = parseConfig({ TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k', BREAK_GLASS_KEY_FILE: ' /run/key ', BREAK_GLASS_PROOF_TTL_S: '60', MAX_SCANS_PER_NAMESPACE: '3' });
  assert.deepEqual(set.breakGlass, { users: [], groups: [], keyFile: '/run/key', proofTtlMs: 60_000 });
  assert.equal(set.scanner.maxScansPerNamespace, 3);
  assert.throws(() => parseConfig({ TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k', BREAK_GLASS_PROOF_TTL_S: '59', MAX_SCANS_PER_NAMESPACE: '0' }), (error: Error) => {
    assert.match(error.message, /BREAK_GLASS_PROOF_TTL_S: expected a whole number from 60 to 31536000/);
    assert.match(error.message, /MAX_SCANS_PER_NAMESPACE: expected a whole number from 1 to 100000/);
    return true;
  });
});
