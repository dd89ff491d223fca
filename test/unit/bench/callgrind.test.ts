/**
 * The callgrind reader behind `npm run bench -- --only instructions`: self costs per function, call
 * costs per edge (names compressed to ids after their first use), and the short-read copies it
 * leaves out of the relay's count.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readDump, shortReadCopies } from '../../../bench/lib/callgrind.js';

const dir = mkdtempSync(join(tmpdir(), 'callgrind-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const READ = 'node::EmitToJSStreamListener::OnStreamRead(long, uv_buf_t const&)';
const DUMP = `# callgrind format
version: 1
events: Ir
summary: 1000

ob=(1) /usr/bin/node
fl=(1) ???
fn=(1) ${READ}
0 50
cfn=(2) __memcpy_avx_unaligned_erms
calls=3 0
0 300
cfn=(3) v8::ArrayBuffer::NewBackingStore(v8::Isolate*, unsigned long)
calls=3 0
0 200
cfn=(4) node::StreamBase::CallJSOnreadMethod(long)
calls=10 0
0 400

fn=(2)
0 450
fn=(3)
0 200
fn=(4)
+2 400
cfn=(2)
calls=1 0
0 150
fn=(5) main
* 0
totals: 1100
`;

describe('callgrind dumps', () => {
  const file = join(dir, 'proxy.1.1-01');
  writeFileSync(file, DUMP);
  const profile = readDump(file);

  it('sums self costs per function, resolving compressed names', () => {
    expect(profile.self.get(READ)).toBe(50);
    expect(profile.self.get('__memcpy_avx_unaligned_erms')).toBe(450);
    expect(profile.self.get('node::StreamBase::CallJSOnreadMethod(long)')).toBe(400);
    expect(profile.total).toBe(1100);
  });

  it('keeps call costs per caller and callee, apart from self costs', () => {
    expect(profile.calls.get(`${READ}\t__memcpy_avx_unaligned_erms`)).toBe(300);
    expect(profile.calls.get(`node::StreamBase::CallJSOnreadMethod(long)\t__memcpy_avx_unaligned_erms`)).toBe(
      150,
    );
  });

  it('counts as short-read copies only the copy and the new buffer made by the read callback', () => {
    // 300 (memcpy) + 200 (NewBackingStore) from OnStreamRead; the memcpy under JavaScript is not one.
    expect(shortReadCopies(profile)).toBe(500);
  });
});
