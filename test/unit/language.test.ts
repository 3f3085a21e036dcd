/** src/pipeline/language.ts: pipeline text to stages, and errors that point at the right place. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePipeline, PipelineSyntaxError, SHOWN_LINE, SHOWN_WORD } from '../../src/pipeline/language.js';

/** Calls parsePipeline expecting a PipelineSyntaxError and returns it. */
function syntaxError(text: string): PipelineSyntaxError {
  try {
    parsePipeline(text);
  } catch (err) {
    assert.ok(err instanceof PipelineSyntaxError, `expected a PipelineSyntaxError for ${JSON.stringify(text)}, got ${err}`);
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

test('stages, in order, with their positions', () => {
  const text = 'parse | icmp-echo | checksum';
  assert.deepEqual(parsePipeline(text), [
    { name: 'parse', pos: 0, args: [] },
    { name: 'icmp-echo', pos: 8, args: [] },
    { name: 'checksum', pos: 20, args: [] },
  ]);
  assert.deepEqual(parsePipeline('parse|checksum'), [
    { name: 'parse', pos: 0, args: [] },
    { name: 'checksum', pos: 6, args: [] },
  ]);
  assert.deepEqual(parsePipeline('parse'), [{ name: 'parse', pos: 0, args: [] }]);
});

test('whitespace of every kind separates words and is otherwise ignored', () => {
  const text = '  \tparse \n|\r\n  pcap\t/tmp/x.pcap   nanos=true  ';
  assert.deepEqual(parsePipeline(text), [
    { name: 'parse', pos: text.indexOf('parse'), args: [] },
    {
      name: 'pcap',
      pos: text.indexOf('pcap'),
      args: [
        { value: '/tmp/x.pcap', pos: text.indexOf('/tmp') },
        { key: 'nanos', value: 'true', pos: text.indexOf('nanos') },
      ],
    },
  ]);
});

test('positional and key=value arguments', () => {
  const [s] = parsePipeline('pcap out.pcap snaplen=96 nanos=true extra');
  assert.equal(s.name, 'pcap');
  assert.deepEqual(s.args, [
    { value: 'out.pcap', pos: 5 },
    { key: 'snaplen', value: '96', pos: 14 },
    { key: 'nanos', value: 'true', pos: 25 },
    { value: 'extra', pos: 36 },
  ]);
  // Only text before the first '=' is the key; an empty value is a value.
  assert.deepEqual(parsePipeline('x a=b=c k=')[0].args, [
    { key: 'a', value: 'b=c', pos: 2 },
    { key: 'k', value: '', pos: 8 },
  ]);
  // Something that is not a name before '=' makes a positional argument.
  assert.deepEqual(parsePipeline('x 1=2 =v -k=v')[0].args, [
    { value: '1=2', pos: 2 },
    { value: '=v', pos: 6 },
    { value: '-k=v', pos: 9 },
  ]);
});

test('single and double quotes, backslash escapes, and an unquoted = only makes key=value', () => {
  const args = (text: string) => parsePipeline(`x ${text}`)[0].args.map((a) => (a.key === undefined ? a.value : `${a.key}:${a.value}`));
  assert.deepEqual(args(`'a b' "c d"`), ['a b', 'c d']);
  assert.deepEqual(args(`'it'"'"'s'`), ["it's"]);
  assert.deepEqual(args(`'a\\b'`), ['a\\b'], 'no escapes inside single quotes');
  assert.deepEqual(args(`"a\\"b" "c\\\\d" "\\$HOME" "\\n"`), ['a"b', 'c\\d', '$HOME', '\\n'], 'double quotes escape only " \\ $ `');
  assert.deepEqual(args(`a\\ b c\\|d \\'e`), ['a b', 'c|d', "'e"]);
  assert.deepEqual(args(`key='a b' "k=v" k\\=v k'='v`), ['key:a b', 'k=v', 'k=v', 'k=v']);
  assert.deepEqual(args(`''`), [''], 'an empty quoted argument is kept');
  assert.deepEqual(args(`pre'mid'"post"`), ['premidpost']);
});

test("'|' inside quotes or escaped does not split stages", () => {
  const stages = parsePipeline(`a 'x | y' "p|q" r\\|s | b`);
  assert.equal(stages.length, 2);
  assert.deepEqual(stages[0].args.map((a) => a.value), ['x | y', 'p|q', 'r|s']);
  assert.equal(stages[1].name, 'b');
  assert.equal(stages[1].pos, 23);
});

test('a stage name may be a quoted path, and a path may contain =', () => {
  const stages = parsePipeline(`'./my stage.mjs' max=5 | ./a=b.mjs`);
  assert.equal(stages[0].name, './my stage.mjs');
  assert.deepEqual(stages[0].args, [{ key: 'max', value: '5', pos: 17 }]);
  assert.equal(stages[1].name, './a=b.mjs');
});

test('errors at exact positions: quotes, backslash, empty stages, empty text, an argument for a name', () => {
  const cases: Array<[string, number, RegExp]> = [
    [`parse | pcap 'out.pcap`, 13, /unterminated single quote/],
    [`parse | pcap "out.pcap`, 13, /unterminated double quote/],
    [`parse | pcap x"out \\"`, 14, /unterminated double quote/],
    [`parse | pcap ab'c`, 15, /unterminated single quote/],
    [`parse \\`, 6, /backslash at the end/],
    [`| parse`, 0, /empty stage: nothing before '\|'/],
    [`  |parse`, 2, /empty stage: nothing before '\|'/],
    [`parse | icmp-echo |`, 18, /empty stage: nothing after '\|'/],
    [`parse |   `, 6, /empty stage: nothing after '\|'/],
    [`parse || checksum`, 7, /empty stage: nothing before '\|'/],
    [`parse | | checksum`, 8, /empty stage: nothing before '\|'/],
    [``, 0, /the pipeline is empty/],
    [`   \t `, 0, /the pipeline is empty/],
    [`parse | mode=full`, 8, /expected a stage name, found the argument 'mode=full'/],
    [`=x`, 0, /expected a stage name/],
  ];
  for (const [text, pos, message] of cases) {
    const err = syntaxError(text);
    assert.equal(err.pos, pos, `pos for ${JSON.stringify(text)}`);
    assert.match(err.message, message, text);
    assert.match(err.message, new RegExp(`column ${pos + 1}\\b`), 'the message counts columns from 1');
    assert.equal(err.text, text);
  }
});

test('format() draws the text and a caret under the offending character, then the hint', () => {
  for (const text of [`parse | pcap 'out.pcap`, `parse | mode=full`, `parse || checksum`, `parse | icmp-echo |`]) {
    const err = syntaxError(text);
    const lines = err.format().split('\n');
    assert.equal(lines[0], err.message);
    assert.equal(lines[1], `  ${text}`);
    assert.match(lines[2], /^ *\^$/);
    assert.equal(lines[2].indexOf('^'), 2 + err.pos);
    assert.equal(lines[1][lines[2].indexOf('^')], text[err.pos], 'the caret is under the character at pos');
    assert.equal(lines.length, 3, 'no hint line for these');
  }
  const empty = syntaxError('').format().split('\n');
  assert.equal(empty[2], '  ^');
  assert.match(empty[3], /e\.g\. 'parse \| icmp-echo \| checksum'/);
});

test('format() on a pipeline written over several lines puts the caret under the offending character', () => {
  // Newlines are whitespace to the tokenizer, so a pipeline may come from a file over several lines.
  const text = 'parse |\n  pcap "out.pcap';
  const err = syntaxError(text);
  assert.equal(err.pos, 15);
  const lines = err.format().split('\n');
  const caretLine = lines.findIndex((l) => /^ *\^$/.test(l));
  assert.ok(caretLine > 0);
  const col = lines[caretLine].indexOf('^');
  assert.equal(lines[caretLine - 1][col], '"', `caret not under the quote:\n${err.format()}`);
});

test('an error in a long pipeline shows its line around the caret and names a long word by its start', () => {
  const long = 'x'.repeat(10_000);
  // The error is at the end of a 10,000-character line, in its middle, and at its start.
  for (const text of [`${long} | parse |`, `${long.slice(0, 5000)} || ${long.slice(0, 5000)}`, `| ${long}`]) {
    const err = syntaxError(text);
    const lines = err.format().split('\n');
    assert.ok(lines.every((l) => l.length <= SHOWN_LINE + 4 + 200), `every line bounded:\n${lines.map((l) => l.length).join(', ')}`);
    assert.ok(lines[1].length <= 2 + SHOWN_LINE + 2);
    const col = lines[2].indexOf('^');
    assert.equal(lines[1][col], text[err.pos], 'the caret is under the character at pos');
    assert.equal(lines[1].startsWith('  …'), err.pos > SHOWN_LINE / 2, 'cut at the start only when the caret is far in');
  }
  const unknown = new PipelineSyntaxError(`unknown stage '${long}'`, long, 0);
  assert.equal(unknown.message, `pipeline error at column 1: unknown stage '${'x'.repeat(SHOWN_WORD - 1)}…'`);
  assert.equal(unknown.reason, `unknown stage '${long}'`, 'the reason itself is whole, for a program to read');
  // A short quoted word, and an apostrophe in the reason's own words, stay as they are.
  const prose = `a user's stage is named '${'y'.repeat(SHOWN_WORD)}', not '${long}'`;
  assert.equal(new PipelineSyntaxError(prose, 'p', 0).message, `pipeline error at column 1: a user's stage is named '${'y'.repeat(SHOWN_WORD)}', not '${'x'.repeat(SHOWN_WORD - 1)}…'`);
});

test('PipelineSyntaxError is a TunpipeError with reason, text, pos and hint', async () => {
  const { TunpipeError } = await import('../../src/errors.js');
  const err = syntaxError('|');
  assert.ok(err instanceof TunpipeError);
  assert.match(err.reason, /empty stage/);
  assert.equal(err.hint, undefined);
});

test('braces nest at most MAX_BRANCH_DEPTH deep: deeper is a syntax error at the brace, not a stack overflow', async () => {
  const { MAX_BRANCH_DEPTH, parseProgram } = await import('../../src/pipeline/language.js');
  const nest = (n: number) => 'parse | ' + 'tee { '.repeat(n) + 'drop' + ' }'.repeat(n);
  assert.equal(parseProgram(nest(MAX_BRANCH_DEPTH)).length, 1);
  const deep = nest(MAX_BRANCH_DEPTH + 1);
  const err = syntaxError(deep);
  assert.match(err.reason, /nest too deep/);
  assert.equal(deep[err.pos], '{');
  // Far past the stack: still a syntax error.
  assert.match(syntaxError(nest(100_000)).reason, /nest too deep/);
  assert.match(syntaxError('parse | ' + 'icmp-echo else { '.repeat(40) + 'drop' + ' }'.repeat(40)).reason, /nest too deep/);
});
