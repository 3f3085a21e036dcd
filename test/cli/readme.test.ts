/**
 * The README's table of stages is the stages' own declarations (what `tunpipe --list` prints): a stage is
 * documented once, in its file, and `npm run readme:stages` writes the table. This test fails when the two
 * drift apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/cli.js';
import { formatStageMarkdown } from '../../src/cli/format.js';
import { builtinStages } from '../../src/pipeline/registry.js';

test("the README's stage table is generated from the declarations (npm run readme:stages)", () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const begin = readme.indexOf('<!-- stages:begin');
  const end = readme.indexOf('<!-- stages:end -->');
  assert.ok(begin >= 0 && end > begin, 'the markers are there');
  const table = readme.slice(readme.indexOf('\n', begin) + 1, end).trim();
  assert.equal(table, formatStageMarkdown(builtinStages()));
  for (const d of builtinStages()) assert.ok(table.includes(`\`${d.name}`), `${d.name} is in the table`);
});
