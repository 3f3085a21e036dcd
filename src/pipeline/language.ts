/**
 * The pipeline language: stages separated by `|`, read left to right, each a name followed by positional
 * and `key=value` arguments, with shell-like quoting ('single', "double" with backslash escapes, \x).
 *
 *     parse | pcap /tmp/in.pcap | icmp-echo | checksum
 *     parse | pcap - nanos=true | ./drop-big.mjs max=1000 | icmp-echo | checksum
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

/** "column C", or "line L, column C" for text of several lines. */
function where(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - (before.lastIndexOf('\n') + 1) + 1;
  return text.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
}

/** An error in pipeline text, with the offset it points at. `format()` draws the caret. */
export class PipelineSyntaxError extends TunpipeError {
  constructor(
    readonly reason: string,
    readonly text: string,
    readonly pos: number,
    readonly hint?: string,
  ) {
    super(`pipeline error at ${where(text, pos)}: ${reason}`);
  }

  /** The message, the line of pipeline text at fault, a caret under the offending place, and a hint. */
  format(): string {
    const start = this.text.lastIndexOf('\n', this.pos - 1) + 1;
    const endAt = this.text.indexOf('\n', this.pos);
    const line = this.text.slice(start, endAt < 0 ? undefined : endAt);
    const lines = [this.message, `  ${line}`, `  ${' '.repeat(Math.max(0, this.pos - start))}^`];
    if (this.hint) lines.push(this.hint);
    return lines.join('\n');
  }
}

interface Token {
  kind: 'word' | 'pipe';
  value: string;
  pos: number;
  /** Offset of the first unquoted '=' in the word, or -1: only that one makes a key=value argument. */
  eq: number;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '|') {
      tokens.push({ kind: 'pipe', value: '|', pos: i, eq: -1 });
      i++;
      continue;
    }
    const start = i;
    let value = '';
    let eq = -1;
    while (i < text.length && !/[\s|]/.test(text[i])) {
      const ch = text[i];
      if (ch === "'") {
        const close = text.indexOf("'", i + 1);
        if (close < 0) throw new PipelineSyntaxError('unterminated single quote', text, i);
        value += text.slice(i + 1, close);
        i = close + 1;
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
      } else if (ch === '\\') {
        if (i + 1 >= text.length) throw new PipelineSyntaxError('backslash at the end of the text', text, i);
        value += text[i + 1];
        i += 2;
      } else {
        if (ch === '=' && eq < 0) eq = value.length;
        value += ch;
        i++;
      }
    }
    tokens.push({ kind: 'word', value, pos: start, eq });
  }
  return tokens;
}

/** Parses pipeline text into stages. Throws PipelineSyntaxError (unterminated quote, empty stage, ...). */
export function parsePipeline(text: string): StageNode[] {
  const tokens = tokenize(text);
  if (tokens.length === 0) throw new PipelineSyntaxError('the pipeline is empty', text, 0, "write stages separated by '|', e.g. 'parse | icmp-echo | checksum'");
  const stages: StageNode[] = [];
  let current: StageNode | null = null;
  for (const t of tokens) {
    if (t.kind === 'pipe') {
      if (current === null) throw new PipelineSyntaxError("empty stage: nothing before '|'", text, t.pos);
      stages.push(current);
      current = null;
      continue;
    }
    if (current === null) {
      if (t.eq >= 0 && !t.value.includes('/')) {
        throw new PipelineSyntaxError(`expected a stage name, found the argument '${t.value}'`, text, t.pos);
      }
      current = { name: t.value, pos: t.pos, args: [] };
    } else if (t.eq > 0 && /^[a-zA-Z][\w-]*$/.test(t.value.slice(0, t.eq))) {
      current.args.push({ key: t.value.slice(0, t.eq), value: t.value.slice(t.eq + 1), pos: t.pos });
    } else {
      current.args.push({ value: t.value, pos: t.pos });
    }
  }
  if (current === null) {
    const last = tokens[tokens.length - 1];
    throw new PipelineSyntaxError("empty stage: nothing after '|'", text, last.pos);
  }
  stages.push(current);
  return stages;
}
