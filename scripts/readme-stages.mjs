#!/usr/bin/env node
// Writes the README's table of stages from the stages' declarations (the same text as `tunpipe --list`).
// Run after `npm run build`: npm run readme:stages
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatStageMarkdown } from '../dist/src/cli/format.js';
import { builtinStages } from '../dist/src/pipeline/registry.js';

const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const text = readFileSync(readme, 'utf8');
const begin = text.indexOf('<!-- stages:begin');
const end = text.indexOf('<!-- stages:end -->');
if (begin < 0 || end < 0) throw new Error('README.md has no <!-- stages:begin --> ... <!-- stages:end --> markers');
const head = text.slice(0, text.indexOf('\n', begin) + 1);
writeFileSync(readme, `${head}${formatStageMarkdown(builtinStages())}\n${text.slice(end)}`);
