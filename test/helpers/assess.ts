/**
 * Assessments as the evaluator builds them (src/engine/evaluator.ts), for tests of the pure decision:
 * local rules first, then the given scan outcome of each image that passed them.
 */
import { checkLocalRules } from '../../src/policy/local-rules.js';
import type { ContainerImage, ImageAssessment, LocalRules, ScanOutcome } from '../../src/policy/types.js';

const DEFAULT_RULES: LocalRules = { denyLatestTag: true, registryAllowlist: [] };

export function assess(containers: readonly ContainerImage[], outcomes: Readonly<Record<string, ScanOutcome>> = {}, rules: LocalRules = DEFAULT_RULES): ImageAssessment[] {
  return containers.map((ci) => {
    const { reference, finding } = checkLocalRules(ci.image, rules);
    const scan = outcomes[ci.image];
    return {
      image: ci.image,
      containers: [ci],
      ...(reference !== undefined ? { reference } : {}),
      ...(finding !== undefined ? { local: finding } : {}),
      ...(finding === undefined && scan !== undefined ? { scan } : {}),
    };
  });
}
