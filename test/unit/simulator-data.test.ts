import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_POLICY_ID,
  loadSampleSimulatorData,
  loadSimulatorData,
  resolveSimulatorData,
  SAMPLE_DATA_URL,
} from '@scangate/simulator/internal/data';
import { SimulatorConfigError } from '@scangate/simulator/internal/errors';

describe('simulator data file', () => {
  it('finds simulator/scanner-data.json from the compiled file', () => {
    assert.match(fileURLToPath(SAMPLE_DATA_URL), /\/simulator\/scanner-data\.json$/);
    assert.doesNotMatch(fileURLToPath(SAMPLE_DATA_URL), /\/dist\//);
  });

  it('the sample validates and has the images the suites rely on', async () => {
    const data = resolveSimulatorData(await loadSampleSimulatorData());
    assert.equal(data.activePolicyId, DEFAULT_POLICY_ID);
    for (const repo of [
      'docker.io/kaizheh/apache-struts2-cve-2017-5638',
      'docker.io/library/nginx',
      'docker.io/bitnami/nginx',
      'docker.io/library/python',
      'quay.io/prometheus/node-exporter',
      'localhost:5000/scangate/demo-app',
    ]) {
      assert.ok(Object.hasOwn(data.repositories, repo), repo);
    }
    const struts = data.repositories['docker.io/kaizheh/apache-struts2-cve-2017-5638'];
    assert.ok(struts?.vulnerabilities.some((v) => v.vuln === 'CVE-2017-5638' && v.severity === 'Critical'));
  });

  it('applies defaults: one active default policy, no vulnerabilities', () => {
    const data = resolveSimulatorData({});
    assert.equal(data.activePolicyId, DEFAULT_POLICY_ID);
    assert.deepEqual(data.policies[0]?.stopSeverities, ['Critical', 'High']);
    assert.deepEqual(data.policies[0]?.warnSeverities, ['Medium']);
    assert.deepEqual(data.defaultVulnerabilities, []);
    assert.deepEqual(data.repositories, {});
  });

  it('resolves the active policy', () => {
    const policies = (active: Array<boolean | undefined>) =>
      active.map((a, i) => ({ id: `p${String(i)}`, name: `p${String(i)}`, ...(a === undefined ? {} : { active: a }) }));
    assert.equal(resolveSimulatorData({ policies: policies([undefined, undefined]) }).activePolicyId, 'p0');
    assert.equal(resolveSimulatorData({ policies: policies([false, true]) }).activePolicyId, 'p1');
    assert.equal(resolveSimulatorData({ policies: policies([false, false]) }).activePolicyId, undefined);
    assert.equal(resolveSimulatorData({ policies: [] }).activePolicyId, undefined);
  });

  function problemsOf(raw: unknown): string {
    let caught: unknown;
    try {
      resolveSimulatorData(raw);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof SimulatorConfigError, 'expected a SimulatorConfigError');
    return caught.problems.join('\n');
  }

  it('lists every field problem with its path', () => {
    const text = problemsOf({
      repositories: {
        nginx: { vulnerabilities: [] },
        'docker.io/library/redis': {
          tags: { '7': { digest: 'sha256:xyz' }, '-bad': {} },
          vulnerabilities: [{ vuln: 'CVE-1', severity: 'Severe', package: 'p' }],
        },
      },
      unknownKey: 1,
    });
    assert.match(text, /repositories\["nginx"\]: .*write "docker\.io\/library\/nginx"/);
    assert.match(text, /tags\["7"\]\.digest: must be sha256/);
    assert.match(text, /tags\["-bad"\]: not a valid tag/);
    assert.match(text, /vulnerabilities\[0\]\.severity: must be one of/);
    assert.match(text, /unknownKey/);
  });

  it('checks policies and digests across entries', () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    const text = problemsOf({
      repositories: {
        'docker.io/library/redis': {
          tags: {
            '7': { digest, vulnerabilities: [] },
            '7.2': { digest, vulnerabilities: [{ vuln: 'CVE-1', severity: 'High', package: 'p' }] },
          },
        },
      },
      policies: [
        { id: 'a', name: 'a', active: true },
        { id: 'a', name: 'b', active: true, stopSeverities: ['High'], warnSeverities: ['High'] },
      ],
    });
    assert.match(text, /same digest is listed for another tag/);
    assert.match(text, /duplicate policy id a/);
    assert.match(text, /at most one policy may be active/);
    assert.match(text, /both stop and warn: High/);
  });

  it('loadSimulatorData reports unreadable and non-JSON files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-data-'));
    try {
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{ not json');
      await assert.rejects(loadSimulatorData(bad), (e: unknown) => e instanceof SimulatorConfigError && /not valid JSON/.test(e.message));
      await assert.rejects(loadSimulatorData(join(dir, 'missing.json')), (e: unknown) => e instanceof SimulatorConfigError && /cannot read/.test(e.message));
      const invalid = join(dir, 'invalid.json');
      await writeFile(invalid, JSON.stringify({ repositories: { 'docker.io/library/x': { tags: { a: { imageId: 'short' } } } } }));
      await assert.rejects(loadSimulatorData(invalid), (e: unknown) => e instanceof SimulatorConfigError && /imageId: must be 64/.test(e.message));
      const good = join(dir, 'good.json');
      await writeFile(good, JSON.stringify({ repositories: { 'docker.io/library/x': {} } }));
      assert.deepEqual(await loadSimulatorData(good), { repositories: { 'docker.io/library/x': {} } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
