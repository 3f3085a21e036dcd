/**
 * Classic BPF in tunpipe: the listing matches `tcpdump -d` line for line; the validator refuses what
 * libpcap's bpf_validate refuses (and opcodes its interpreter would abort on); the translation keeps
 * libpcap's corner cases (loads past the end, division by a zero X, 32-bit wrapping, wire length, backward
 * jumps), each checked against libpcap's own interpreter; libpcap's compile errors come through.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  BPF_ABS, BPF_ALU, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
  BPF_LEN, BPF_LSH, BPF_MEM, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_RET, BPF_RSH, BPF_ST, BPF_W, BPF_X, BPF_A, BPF_SUB,
  BPF_MISC, BPF_TAX, formatProgram, validateProgram, type BpfInsn,
} from '../../src/filter/bpf.js';
import { bpfToFunction, bpfToSource, formFor, MAX_BACKWARD_JUMPS, MAX_NESTED_TARGETS } from '../../src/filter/bpf-to-js.js';
import { compileExpression, dltForLinkType, FilterCompileError, LibpcapInterpreter } from '../../src/filter/libpcap.js';
import { compileFilter } from '../../src/filter/compile.js';
import { hasCommand } from '../helpers/pcap-tools.js';
import { echoRequest } from '../helpers/packets.js';

const I = (code: number, k = 0, jt = 0, jf = 0): BpfInsn => ({ code, jt, jf, k: k >>> 0 });

/** Runs `program` on `packet` in both and returns the JavaScript result after checking libpcap agrees. */
function both(program: BpfInsn[], packet: Buffer, wirelen = packet.length): number {
  const js = bpfToFunction(program)(packet, packet.length, wirelen);
  assert.equal(js, new LibpcapInterpreter(program).run(packet, wirelen), `javascript and libpcap differ on\n${formatProgram(program)}`);
  return js;
}

describe('listing', () => {
  const expressions = ['icmp', 'tcp port 80', 'ip6 protochain 6', 'udp and (port 53 or port 5353) and not src host 198.18.0.1', 'ip[2:2] % 7 = 3 and len > 60', 'tcp[(tcp[12] >> 4) * 4] = 0x47'];
  test('is what tcpdump -d prints, for RAW and Ethernet', { skip: hasCommand('tcpdump') ? false : 'tcpdump is not installed' }, () => {
    for (const [linkType, name] of [[101, 'RAW'], [1, 'EN10MB']] as const) {
      for (const expr of [...expressions, ...(linkType === 1 ? ['vlan 100 and arp', 'ether multicast and not broadcast'] : [])]) {
        const tcpdump = execFileSync('tcpdump', ['-d', '-y', name, expr], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
        assert.equal(compileFilter(expr, { linkType }).listing(), tcpdump, `${name}: ${expr}`);
      }
    }
  });
});

describe('validation', () => {
  const ret = I(BPF_RET | BPF_K, 1);
  const refused: [string, BpfInsn[], RegExp][] = [
    ['an empty program', [], /empty/],
    ['a program that does not end in a return', [I(BPF_LD | BPF_IMM, 1)], /last instruction/],
    ['an unknown opcode', [I(0xffff), ret], /unknown opcode/],
    ['a load of a size libpcap does not run', [I(BPF_LD | 0x18 | BPF_ABS), ret], /unknown opcode/],
    ['scratch memory past M[15]', [I(BPF_ST, 16), ret], /scratch memory/],
    ['a load from M[16]', [I(BPF_LD | BPF_MEM, 16), ret], /scratch memory/],
    ['a constant division by zero', [I(BPF_ALU | BPF_DIV | BPF_K, 0), ret], /division by zero/],
    ['a constant modulo by zero', [I(BPF_ALU | BPF_MOD | BPF_K, 0), ret], /division by zero/],
    ['a conditional jump past the end', [I(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0), ret], /past the end/],
    ['an unconditional jump past the end', [I(BPF_JMP | BPF_JA, 1), ret], /past the end/],
    ['a jump to itself', [I(BPF_JMP | BPF_JA, 0xffffffff), ret], /itself/],
    ['a jump before the start', [I(BPF_JMP | BPF_JA, 0xfffffff0), ret], /before the start/],
    ['a k that is not a 32-bit number', [{ code: BPF_RET | BPF_K, jt: 0, jf: 0, k: 2 ** 32 }], /unsigned 32-bit/],
  ];
  for (const [what, program, re] of refused) {
    test(`refuses ${what}`, () => {
      assert.match(validateProgram(program) ?? 'accepted', re);
      assert.throws(() => bpfToFunction(program), re);
    });
  }
  test('accepts what pcap_compile makes, optimized or not', () => {
    for (const expr of ['ip', 'ip6 protochain 6', 'tcp[tcpflags] & tcp-syn != 0', 'ip[2:2] / (ip[8] - 64) > 0']) {
      for (const optimize of [true, false]) assert.equal(validateProgram(compileExpression(expr, { optimize })), null, expr);
    }
  });
});

describe('translation keeps the interpreter’s corner cases', () => {
  const pkt = Buffer.from('4500001c0001000040110000c6120002c61200010035003500080000', 'hex');
  test('a load that reaches past the captured bytes rejects, at every size and mode', () => {
    for (const [code, k] of [[BPF_LD | BPF_W | BPF_ABS, pkt.length - 3], [BPF_LD | BPF_H | BPF_ABS, pkt.length - 1], [BPF_LD | BPF_B | BPF_ABS, pkt.length], [BPF_LD | BPF_W | BPF_ABS, 0xfffffffe], [BPF_LDX | BPF_MSH | BPF_B, pkt.length]]) {
      assert.equal(both([I(code, k), I(BPF_RET | BPF_K, 7)], pkt), 0);
      assert.equal(both([I(code, k - 1 < 0 ? 0 : k - (k > 0xffff ? 0 : 1)), I(BPF_RET | BPF_K, 7)], pkt), k > 0xffff ? 0 : 7);
    }
    // Indirect loads whose offset wraps in 32 bits are still out of bounds.
    for (const code of [BPF_LD | BPF_W | BPF_IND, BPF_LD | BPF_H | BPF_IND, BPF_LD | BPF_B | BPF_IND]) {
      assert.equal(both([I(BPF_LDX | BPF_IMM, 0xfffffff0), I(code, 0x20), I(BPF_RET | BPF_K, 7)], pkt), 0);
      assert.equal(both([I(BPF_LDX | BPF_IMM, 4), I(code, 4), I(BPF_RET | BPF_A)], pkt), code === (BPF_LD | BPF_B | BPF_IND) ? 0x40 : code === (BPF_LD | BPF_H | BPF_IND) ? 0x4011 : 0x40110000);
    }
  });
  test('division and modulo by a zero X return 0; by a constant they divide', () => {
    for (const op of [BPF_DIV, BPF_MOD]) {
      assert.equal(both([I(BPF_LD | BPF_IMM, 100), I(BPF_LDX | BPF_IMM, 0), I(BPF_ALU | op | BPF_X), I(BPF_RET | BPF_K, 9)], pkt), 0);
    }
    assert.equal(both([I(BPF_LD | BPF_IMM, 0xffffffff), I(BPF_ALU | BPF_DIV | BPF_K, 7), I(BPF_RET | BPF_A)], pkt), Math.floor(0xffffffff / 7));
    assert.equal(both([I(BPF_LD | BPF_IMM, 0xffffffff), I(BPF_ALU | BPF_MOD | BPF_K, 10), I(BPF_RET | BPF_A)], pkt), 0xffffffff % 10);
  });
  test('arithmetic wraps at 32 bits, unsigned', () => {
    assert.equal(both([I(BPF_LD | BPF_IMM, 0xfffffff0), I(BPF_ALU | BPF_MUL | BPF_K, 0x10001), I(BPF_RET | BPF_A)], pkt), Math.imul(0xfffffff0, 0x10001) >>> 0);
    assert.equal(both([I(BPF_LD | BPF_IMM, 5), I(BPF_ALU | BPF_SUB | BPF_K, 6), I(BPF_RET | BPF_A)], pkt), 0xffffffff);
    assert.equal(both([I(BPF_LD | BPF_IMM, 1), I(BPF_ALU | BPF_NEG), I(BPF_RET | BPF_A)], pkt), 0xffffffff);
    assert.equal(both([I(BPF_LD | BPF_IMM, 0x80000000), I(BPF_JMP | BPF_JGT | BPF_K, 0x7fffffff, 0, 1), I(BPF_RET | BPF_K, 1), I(BPF_RET | BPF_K, 2)], pkt), 1);
  });
  test('shifts by X of 32 or more give 0; constant shifts count modulo 32', () => {
    for (const op of [BPF_LSH, BPF_RSH]) {
      for (const x of [31, 32, 33, 0xffffffff]) assert.equal(both([I(BPF_LD | BPF_IMM, 0x80000001), I(BPF_LDX | BPF_IMM, x), I(BPF_ALU | op | BPF_X), I(BPF_RET | BPF_A)], pkt), x >= 32 ? 0 : op === BPF_LSH ? (0x80000001 << x) >>> 0 : 0x80000001 >>> x);
      for (const k of [1, 31, 33]) both([I(BPF_LD | BPF_IMM, 0x80000001), I(BPF_ALU | op | BPF_K, k), I(BPF_RET | BPF_A)], pkt);
    }
  });
  test('ld len is the wire length; loads are bounded by the captured length', () => {
    const prog = [I(BPF_LD | BPF_W | BPF_LEN), I(BPF_RET | BPF_A)];
    assert.equal(both(prog, pkt), pkt.length);
    assert.equal(both(prog, pkt, 1500), 1500);
    assert.equal(both([I(BPF_LDX | BPF_W | BPF_LEN), I(BPF_MISC | BPF_TAX + 0x80), I(BPF_RET | BPF_A)], pkt, 99), 99);
    assert.equal(bpfToFunction(prog)(pkt, pkt.length), pkt.length, 'the wire length defaults to the captured one');
  });
  test('scratch memory and X carry values between instructions', () => {
    assert.equal(both([I(BPF_LD | BPF_B | BPF_ABS, 9), I(BPF_ST, 15), I(BPF_LD | BPF_IMM, 0), I(BPF_LDX | BPF_MEM, 15), I(BPF_MISC | BPF_TAX + 0x80), I(BPF_RET | BPF_A)], pkt), 17);
    assert.equal(both([I(BPF_LDX | BPF_MSH | BPF_B, 0), I(BPF_LD | BPF_H | BPF_IND, 2), I(BPF_RET | BPF_A)], pkt), 53);
  });
  test('a program with backward jumps runs as a loop, bounded', () => {
    const f = compileFilter('ip6 protochain 6');
    assert.match(f.source(), /switch \(pc\)/);
    assert.doesNotMatch(compileFilter('tcp port 80').source(), /switch|for \(/, 'forward-only programs are straight-line code');
    // A loop that never ends in libpcap gives up in JavaScript (not run in libpcap: it would spin).
    const spin = [I(BPF_LD | BPF_IMM, 1), I(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1), I(BPF_JMP | BPF_JA, 0xfffffffe), I(BPF_RET | BPF_K, 5)];
    assert.equal(validateProgram(spin), null);
    assert.equal(bpfToFunction(spin)(pkt, pkt.length), 0);
    assert.ok(MAX_BACKWARD_JUMPS >= 1 << 16);
    // A loop that ends: count A down from 3.
    const count = [I(BPF_LD | BPF_IMM, 3), I(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0), I(BPF_ALU | BPF_SUB | BPF_K, 1), I(BPF_JMP | BPF_JA, 0xfffffffd), I(BPF_RET | BPF_K, 77)];
    assert.equal(both(count, pkt), 77);
  });
  test('a program with more jump targets than blocks nest well runs in the loop form, with the same results', () => {
    // ldb [k]; then a chain of jeq whose true branches skip one instruction: one jump target each.
    const n = MAX_NESTED_TARGETS + 500;
    const program = [I(BPF_LD | BPF_B | BPF_ABS, 9), ...Array.from({ length: n }, (_, i) => I(BPF_JMP | BPF_JEQ | BPF_K, i & 0xff, 1, 0)), I(BPF_RET | BPF_A), I(BPF_RET | BPF_K, 7)];
    assert.equal(validateProgram(program), null);
    assert.equal(formFor(program), 'loop');
    const js = bpfToFunction(program);
    const pcap = new LibpcapInterpreter(program);
    for (const b of [0, 1, 17, 0xfe, 0xff]) {
      const p = Buffer.from(pkt);
      p[9] = b;
      assert.equal(js(p, p.length), pcap.run(p), `byte ${b}`);
    }
    assert.equal(js(pkt.subarray(0, 5), 5), 0);
  });
  test('both forms of a forward-only program agree', () => {
    const program = compileExpression('udp and (port 53 or port 5353) and not src host 198.18.0.1');
    assert.equal(formFor(program), 'straight');
    const straight = bpfToFunction(program, 'straight');
    const loop = bpfToFunction(program, 'loop');
    const dns = Buffer.from(pkt);
    assert.equal(straight(dns, dns.length), loop(dns, dns.length));
    assert.equal(straight(dns, dns.length), 262144);
    assert.throws(() => bpfToSource(compileExpression('ip6 protochain 6'), 'straight'), /backward jumps/);
  });
  test('returns the snap length a program gives, A or a constant', () => {
    assert.equal(both([I(BPF_RET | BPF_K, 0xffffffff)], pkt), 0xffffffff);
    assert.equal(both([I(BPF_LD | BPF_H | BPF_ABS, 2), I(BPF_RET | BPF_A)], pkt), 28);
    assert.equal(compileFilter('udp', { snaplen: 96 }).run(pkt, pkt.length), 96);
  });
  test('the generated source is readable: one line per instruction with its listing', () => {
    const src = bpfToSource(compileExpression('icmp'));
    assert.match(src, /\/\/ \(000\) ldb \[0\]/);
    assert.match(src, /return 262144; \/\/ \(\d+\) ret #262144/);
  });
});

describe('libpcap', () => {
  test('compile errors are libpcap’s own messages', () => {
    assert.throws(() => compileExpression('ip and foo'), (e: unknown) => e instanceof FilterCompileError && /syntax error/.test(e.message));
    assert.throws(() => compileExpression('ether host 02:00:00:00:00:01', { linkType: 101 }), (e: unknown) => e instanceof FilterCompileError && /ethernet addresses supported only on/.test(e.message));
    assert.throws(() => compileExpression('port 99999'), /port 99999 is > 65535|illegal port number/);
    assert.equal(compileExpression('ether host 02:00:00:00:00:01', { linkType: 1 }).length > 0, true);
  });
  test('link types map to compile-time DLT values (RAW is 12, not 101)', () => {
    assert.equal(dltForLinkType(101), 12);
    assert.equal(dltForLinkType(1), 1);
    assert.equal(dltForLinkType(228), 228);
    assert.equal(dltForLinkType(229), 229);
    assert.throws(() => dltForLinkType(105), /link type 105 is not supported/);
  });
  test('a filter for IPv4 and RAW matches the same echo request', () => {
    const req = echoRequest({ src: '198.18.0.2', dst: '198.18.0.1' });
    assert.ok(compileFilter('icmp and src host 198.18.0.2').matches(req));
    assert.ok(!compileFilter('icmp and src host 198.18.0.3').matches(req));
    assert.ok(compileFilter('icmp[icmptype] == icmp-echo', { linkType: 228 }).matches(req));
    assert.ok(compileFilter('ip6', { linkType: 229 }).matches(Buffer.from('60000000000011400000000000000000000000000000000000000000000000000000000000000000', 'hex')));
  });
});
