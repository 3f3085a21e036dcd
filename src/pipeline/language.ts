/**
 * The pipeline language. A text holds one or more pipelines, separated by `;` or a line break; a pipeline
 * is elements separated by `|`, read left to right:
 *
 *     parse | pcap /tmp/in.pcap | icmp-echo | checksum
 *     from tpa0 | to tpb0; from tpb0 | to tpa0
 *     parse | tee { pcap all.pcap } | filter-icmp-echo else { pcap other.pcap } | swap-addrs | to-reply | checksum
 *
 * Elements:
 * - a stage: a name followed by positional and `key=value` arguments, quoted like a shell ('single',
 *   "double" with backslash escapes, \x); optionally followed by `else { PIPELINE }`, which takes the
 *   packets the stage would drop;
 * - `tee { PIPELINE }`: a copy of every packet goes into the branch, the original goes on;
 * - `from NAME` (first element only): the pipeline reads from that device or port;
 * - `to NAME` or `drop` (last element only): where the pipeline or branch ends.
 * A line break separates pipelines unless the line ends with `|` or the next one starts with `|` (so a
 * long pipeline may be written over several lines); inside braces it is plain whitespace. Every Unicode
 * space character separates words; other invisible characters (controls, zero-width and format
 * characters) outside quotes are refused, since they cannot be seen where the error would be.
 *
 * This module only turns text into a syntax tree; ./resolve.ts checks names and arguments.
 */
import { TunpipeError } from '../errors.js';

/** One argument as written: `key=value` or a bare value; `pos` is its offset in the text. */
export interface ArgNode {
  key?: string;
  value: string;
  pos: number;
}

export interface StageNode {
  name: string;
  pos: number;
  args: ArgNode[];
}

/** One element of a pipeline. */
export type ElementNode =
  | { kind: 'stage'; stage: StageNode; orElse?: PipelineNode }
  | { kind: 'tee'; pos: number; branch: PipelineNode }
  | { kind: 'from'; pos: number; port: string; portPos: number }
  | { kind: 'to'; pos: number; port: string; portPos: number }
  | { kind: 'drop'; pos: number };

/** A pipeline, or a branch (inside braces), with the offset where it starts. */
export interface PipelineNode {
  pos: number;
  elements: ElementNode[];
}

/** "column C", or "line L, column C" for text of several lines. */
function where(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - (before.lastIndexOf('\n') + 1) + 1;
  return text.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
}

/** Longest quoted word an error's reason shows whole ('...' in the reason), and longest line of text shown. */
export const SHOWN_WORD = 60;
export const SHOWN_LINE = 100;

/**
 * The reason with each quoted word ('...', as reasons quote what the user wrote) cut to SHOWN_WORD
 * characters: a stage name of ten thousand characters is named by its start, not printed whole.
 */
function shortened(reason: string): string {
  // A quote opens after a space or '(' and closes before one or punctuation: an apostrophe (a user's) is neither.
  return reason.replace(/(^|[\s(])'([^']*)'(?=$|[\s,.;:)])/g, (all, open: string, word: string) => {
    const chars = [...word];
    return chars.length > SHOWN_WORD ? `${open}'${chars.slice(0, SHOWN_WORD - 1).join('')}…'` : all;
  });
}

/** An error in pipeline text, with the offset it points at. `format()` draws the caret. */
export class PipelineSyntaxError extends TunpipeError {
  constructor(
    readonly reason: string,
    readonly text: string,
    readonly pos: number,
    readonly hint?: string,
  ) {
    super(`pipeline error at ${where(text, pos)}: ${shortened(reason)}`);
  }

  /**
   * The message, the line of pipeline text at fault, a caret under the offending place, and a hint. A line
   * longer than SHOWN_LINE is shown around the caret, cut with '…' where it goes on.
   */
  format(): string {
    const start = this.text.lastIndexOf('\n', this.pos - 1) + 1;
    const endAt = this.text.indexOf('\n', this.pos);
    const line = this.text.slice(start, endAt < 0 ? undefined : endAt);
    const at = Math.max(0, this.pos - start);
    const from = line.length <= SHOWN_LINE ? 0 : Math.max(0, Math.min(at - SHOWN_LINE / 2, line.length - SHOWN_LINE));
    const to = Math.min(line.length, from + SHOWN_LINE);
    const before = from > 0 ? '…' : '';
    const shown = before + line.slice(from, to) + (to < line.length ? '…' : '');
    // Tabs stay tabs so the caret lines up however wide the terminal draws them.
    const pad = (before + line.slice(from, at)).replace(/[^\t]/g, ' ');
    const lines = [this.message, `  ${visible(shown)}`, `  ${pad}^`];
    if (this.hint) lines.push(this.hint);
    return lines.join('\n');
  }
}

/** The line as it can be shown on a terminal: invisible characters as U+XXXX would shift the caret, so as '?'. */
function visible(line: string): string {
  return line.replace(INVISIBLE_G, '?');
}

type TokenKind = 'word' | 'pipe' | 'semi' | 'newline' | 'open' | 'close';

interface Token {
  kind: TokenKind;
  value: string;
  pos: number;
  /** Offset of the first unquoted '=' in the word, or -1: only that one makes a key=value argument. */
  eq: number;
  /** True when any part of the word was quoted or escaped: such a word is never a keyword. */
  quoted: boolean;
}

/** Unicode white space (JavaScript's \s: space, tab, line breaks, no-break space, U+3000, U+FEFF, ...). */
const SPACE = /\s/;
/** Controls and format characters that \s does not cover (U+200B, U+2060, soft hyphen, bidi marks, ...). */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/u;
const INVISIBLE_G = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/gu;
const DELIMITERS = '|;{}';

function codePoint(text: string, i: number): string {
  return `U+${text.codePointAt(i)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      tokens.push({ kind: 'newline', value: c, pos: i, eq: -1, quoted: false });
      i++;
      continue;
    }
    if (SPACE.test(c)) {
      i++;
      continue;
    }
    if (DELIMITERS.includes(c)) {
      const kind: TokenKind = c === '|' ? 'pipe' : c === ';' ? 'semi' : c === '{' ? 'open' : 'close';
      tokens.push({ kind, value: c, pos: i, eq: -1, quoted: false });
      i++;
      continue;
    }
    const start = i;
    let value = '';
    let eq = -1;
    let quoted = false;
    // Every branch below consumes at least one character, so the loop always ends.
    while (i < text.length && !SPACE.test(text[i]) && !DELIMITERS.includes(text[i])) {
      const ch = text[i];
      if (ch === "'") {
        const close = text.indexOf("'", i + 1);
        if (close < 0) throw new PipelineSyntaxError('unterminated single quote', text, i);
        value += text.slice(i + 1, close);
        i = close + 1;
        quoted = true;
      } else if (ch === '"') {
        let j = i + 1;
        for (;;) {
          if (j >= text.length) throw new PipelineSyntaxError('unterminated double quote', text, i);
          const d = text[j];
          if (d === '"') break;
          if (d === '\\' && j + 1 < text.length && '"\\$`'.includes(text[j + 1])) {
            value += text[j + 1];
            j += 2;
          } else {
            value += d;
            j++;
          }
        }
        i = j + 1;
        quoted = true;
      } else if (ch === '\\') {
        if (i + 1 >= text.length) throw new PipelineSyntaxError('backslash at the end of the text', text, i);
        value += text[i + 1];
        i += 2;
        quoted = true;
      } else if (INVISIBLE.test(ch)) {
        throw new PipelineSyntaxError(`invisible character ${codePoint(text, i)} in the pipeline text: delete it, or quote it if it belongs in an argument`, text, i);
      } else {
        if (ch === '=' && eq < 0) eq = value.length;
        value += ch;
        i++;
      }
    }
    tokens.push({ kind: 'word', value, pos: start, eq, quoted });
  }
  return tokens;
}

const EXAMPLE_HINT = "write stages separated by '|', e.g. 'parse | icmp-echo | checksum'";

/** Line breaks become separators where they end a pipeline, and vanish where one goes on or inside braces. */
function withSeparators(tokens: Token[]): Token[] {
  const out: Token[] = [];
  let depth = 0;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind === 'open') depth++;
    else if (t.kind === 'close') depth = Math.max(0, depth - 1);
    if (t.kind !== 'newline') {
      out.push(t);
      continue;
    }
    if (depth > 0) continue;
    const prev = out[out.length - 1];
    let next = k + 1;
    while (next < tokens.length && tokens[next].kind === 'newline') next++;
    const following = tokens[next];
    if (prev === undefined || prev.kind === 'pipe' || prev.kind === 'semi' || prev.kind === 'open') continue;
    if (following === undefined || following.kind === 'pipe') continue;
    out.push({ ...t, kind: 'semi' });
  }
  return out;
}

const KEYWORDS = new Set(['from', 'to', 'drop', 'tee', 'else']);

/** How deep braces may nest: far past any pipeline a person writes, far short of the parser's stack. */
export const MAX_BRANCH_DEPTH = 32;

class Parser {
  private k = 0;
  private depth = 0;
  constructor(
    private readonly text: string,
    private readonly tokens: Token[],
  ) {}

  private peek(): Token | undefined {
    return this.tokens[this.k];
  }

  private error(reason: string, pos: number, hint?: string): never {
    throw new PipelineSyntaxError(reason, this.text, pos, hint);
  }

  private isKeyword(t: Token | undefined, word: string): boolean {
    return t !== undefined && t.kind === 'word' && !t.quoted && t.value === word;
  }

  /** Every pipeline of the text. */
  program(): PipelineNode[] {
    const pipelines: PipelineNode[] = [];
    if (this.tokens.every((t) => t.kind === 'semi')) this.error('the pipeline is empty', 0, EXAMPLE_HINT);
    while (this.k < this.tokens.length) {
      const t = this.peek()!;
      if (t.kind === 'semi') {
        this.k++;
        continue;
      }
      if (t.kind === 'close') this.error("'}' without a '{' before it", t.pos);
      pipelines.push(this.pipeline(false));
      const after = this.peek();
      if (after && after.kind === 'close') this.error("'}' without a '{' before it", after.pos);
    }
    return pipelines;
  }

  /** Elements up to a ';', a '}' or the end. */
  private pipeline(inBranch: boolean): PipelineNode {
    const first = this.peek();
    const node: PipelineNode = { pos: first?.pos ?? this.text.length, elements: [] };
    let ended: ElementNode | null = null;
    for (;;) {
      const t = this.peek();
      if (t === undefined || t.kind === 'semi' || t.kind === 'close') {
        if (node.elements.length === 0) {
          if (t && t.kind === 'close') this.error('empty branch: nothing between the braces', t.pos);
          this.error('the pipeline is empty', node.pos, EXAMPLE_HINT);
        }
        return node;
      }
      if (t.kind === 'pipe') {
        if (node.elements.length === 0) this.error("empty stage: nothing before '|'", t.pos);
        this.error("empty stage: nothing before '|'", t.pos);
      }
      if (ended) this.error(`nothing can follow '${ended.kind === 'to' ? `to ${ended.port}` : 'drop'}': it ends the ${inBranch ? 'branch' : 'pipeline'}`, t.pos);
      const el = this.element(node.elements.length === 0, inBranch);
      node.elements.push(el);
      if (el.kind === 'to' || el.kind === 'drop') ended = el;
      const sep = this.peek();
      if (sep === undefined || sep.kind === 'semi' || sep.kind === 'close') continue;
      if (sep.kind === 'pipe') {
        this.k++;
        const next = this.peek();
        if (next === undefined || next.kind === 'semi' || next.kind === 'close') this.error("empty stage: nothing after '|'", sep.pos);
        continue;
      }
      if (sep.kind === 'open') this.error("'{' must follow 'tee' or 'else'", sep.pos);
      this.error(`expected '|' before '${sep.value}'`, sep.pos);
    }
  }

  private braced(keyword: Token): PipelineNode {
    const open = this.peek();
    if (open === undefined || open.kind !== 'open') this.error(`'${keyword.value}' needs a branch in braces: ${keyword.value} { pcap x.pcap }`, open?.pos ?? keyword.pos + keyword.value.length);
    if (this.depth >= MAX_BRANCH_DEPTH) this.error(`branches nest too deep: at most ${MAX_BRANCH_DEPTH} levels of braces`, open.pos);
    this.k++;
    const first = this.peek();
    if (first === undefined) this.error("unclosed '{': add '}' to end the branch", open.pos);
    if (first.kind === 'close') this.error('empty branch: nothing between the braces', first.pos);
    this.depth++;
    const branch = this.pipeline(true);
    this.depth--;
    const close = this.peek();
    if (close === undefined) this.error("unclosed '{': add '}' to end the branch", open.pos);
    if (close.kind === 'semi') this.error(`a branch is one pipeline: '${close.value === ';' ? ';' : 'a line break'}' cannot stand inside braces`, close.pos);
    this.k++;
    return branch;
  }

  private element(first: boolean, inBranch: boolean): ElementNode {
    const t = this.peek()!;
    if (t.kind === 'open') this.error("'{' must follow 'tee' or 'else'", t.pos);
    // Only word tokens reach here.
    this.k++;
    if (this.isKeyword(t, 'from') || this.isKeyword(t, 'to')) {
      const kind = t.value as 'from' | 'to';
      const name = this.peek();
      if (name === undefined || name.kind !== 'word') this.error(`'${kind}' needs a device name: ${kind} tun0`, name?.pos ?? t.pos + t.value.length);
      this.k++;
      if (kind === 'from' && (!first || inBranch)) {
        this.error(inBranch ? "'from' cannot start a branch: a branch reads what its tee or else gives it" : "'from' must start its pipeline", t.pos);
      }
      const after = this.peek();
      if (after && after.kind === 'word') this.error(`'${kind} ${name.value}' takes one name; found '${after.value}'`, after.pos);
      return { kind, pos: t.pos, port: name.value, portPos: name.pos };
    }
    if (this.isKeyword(t, 'drop')) {
      const after = this.peek();
      if (after && after.kind === 'word') this.error(`'drop' takes no arguments; found '${after.value}'`, after.pos);
      return { kind: 'drop', pos: t.pos };
    }
    if (this.isKeyword(t, 'tee')) {
      const branch = this.braced(t);
      if (this.isKeyword(this.peek(), 'else')) this.error("'else' follows a stage that drops packets; a tee drops none", this.peek()!.pos);
      return { kind: 'tee', pos: t.pos, branch };
    }
    if (this.isKeyword(t, 'else')) this.error("'else' with no stage before it: write STAGE else { ... }", t.pos);
    if (t.eq >= 0 && !t.value.includes('/')) this.error(`expected a stage name, found the argument '${t.value}'`, t.pos);
    const stage: StageNode = { name: t.value, pos: t.pos, args: [] };
    for (;;) {
      const a = this.peek();
      if (a === undefined || a.kind !== 'word') break;
      if (this.isKeyword(a, 'else')) {
        this.k++;
        const orElse = this.braced(a);
        if (this.isKeyword(this.peek(), 'else')) this.error("a stage has one 'else' branch", this.peek()!.pos);
        return { kind: 'stage', stage, orElse };
      }
      this.k++;
      if (a.eq > 0 && /^[a-zA-Z][\w-]*$/.test(a.value.slice(0, a.eq))) stage.args.push({ key: a.value.slice(0, a.eq), value: a.value.slice(a.eq + 1), pos: a.pos });
      else stage.args.push({ value: a.value, pos: a.pos });
    }
    return { kind: 'stage', stage };
  }
}

/** Parses pipeline text into its pipelines. Throws PipelineSyntaxError (unterminated quote, stray brace, ...). */
export function parseProgram(text: string): PipelineNode[] {
  const tokens = withSeparators(tokenize(text));
  if (tokens.length === 0) throw new PipelineSyntaxError('the pipeline is empty', text, 0, EXAMPLE_HINT);
  return new Parser(text, tokens).program();
}

/**
 * Parses text that is one straight pipeline of stages (no branches, ports or several pipelines), as
 * compound stages are written. Throws PipelineSyntaxError for anything else.
 */
export function parsePipeline(text: string): StageNode[] {
  const program = parseProgram(text);
  if (program.length > 1) throw new PipelineSyntaxError('expected one pipeline here', text, program[1].pos);
  return program[0].elements.map((e) => {
    if (e.kind !== 'stage' || e.orElse) throw new PipelineSyntaxError(`expected a stage here, not '${e.kind === 'stage' ? 'else' : e.kind}'`, text, e.kind === 'stage' ? e.stage.pos : e.pos);
    return e.stage;
  });
}

/** True when a word is one of the language's keywords (a stage cannot be called that). */
export function isKeyword(word: string): boolean {
  return KEYWORDS.has(word);
}
