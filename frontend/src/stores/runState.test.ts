// Unit tests of the run view: folding the event log into node states at a scrubber position,
// the SSE parser over split chunks, the JSON-Schema form helpers, and the waiting (node, item) list.
import { describe, expect, it } from 'vitest';
import { SseParser } from '../api/sse';
import type { RunEvent } from '../api/types';
import { defaultParams, fieldsOf, validateParams } from '../panels/schema';
import { describeEvent, runStatusAt, statesAt, waitingItems } from './runState';

const ev = (seq: number, kind: string, node: string | null, from: string | null, to: string, attempt = 1, item = 0): RunEvent => ({
  seq, at: '', kind, step_id: null, node_id: node, item_index: item, attempt, from_status: from, to_status: to, data: null,
});

const log: RunEvent[] = [
  ev(1, 'run', null, null, 'queued'),
  ev(2, 'step', 'a', 'pending', 'ready', 0),
  ev(3, 'step', 'a', 'ready', 'running'),
  ev(4, 'run', null, 'queued', 'running'),
  ev(5, 'step', 'a', 'running', 'retrying'),
  ev(6, 'step', 'a', 'retrying', 'ready', 1),
  ev(7, 'step', 'a', 'ready', 'running', 2),
  ev(8, 'step', 'a', 'running', 'succeeded', 2),
  ev(9, 'step', 'b', 'pending', 'ready', 0),
];

describe('statesAt', () => {
  it('starts every node pending and applies transitions up to the cursor', () => {
    expect(statesAt(log, -1, ['a', 'b'])).toEqual({
      a: { status: 'pending', attempt: 0, items: 0 },
      b: { status: 'pending', attempt: 0, items: 0 },
    });
    expect(statesAt(log, 4, ['a', 'b']).a.status).toBe('retrying');
    const end = statesAt(log, 8, ['a', 'b']);
    expect(end.a).toEqual({ status: 'succeeded', attempt: 2, items: 1 });
    expect(end.b.status).toBe('ready');
  });
  it('tracks the run status and describes events for the timeline', () => {
    expect(runStatusAt(log, 2)).toBe('queued');
    expect(runStatusAt(log, 8)).toBe('running');
    expect(describeEvent(log[6])).toBe('a ready → running (attempt 2)');
    expect(describeEvent(log[0])).toBe('run new → queued');
  });
});

describe('SseParser', () => {
  it('reassembles events split across chunks and skips keepalive comments', () => {
    const p = new SseParser();
    expect(p.push('id: 1\nevent: st')).toEqual([]);
    expect(p.push('ep\ndata: {"a":1}\n\n: keepalive\n\nid: 2\r\nevent: end\r\ndata: x\r\n')).toEqual([
      { event: 'step', data: '{"a":1}', id: '1' },
    ]);
    expect(p.push('\r\n')).toEqual([{ event: 'end', data: 'x', id: '2' }]);
  });
});

describe('schema form helpers', () => {
  const schema = {
    $ref: '#/$defs/P',
    $defs: {
      P: {
        type: 'object',
        properties: {
          url: { type: 'string' },
          template: { type: 'string' },
          seconds: { type: 'number', default: 1 },
          rounds: { type: 'integer', default: 1 },
          on_timeout: { enum: ['continue', 'fail'], default: 'fail' },
          timeout_s: { anyOf: [{ type: 'number' }, { type: 'null' }], default: null },
          headers: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        },
        required: ['url', 'template'],
      },
    },
  };
  it('resolves $ref and picks a widget per field', () => {
    const kinds = Object.fromEntries(fieldsOf(schema).map((f) => [f.name, f.kind]));
    expect(kinds).toEqual({
      url: 'string', template: 'code', seconds: 'number', rounds: 'integer',
      on_timeout: 'enum', timeout_s: 'number', headers: 'json',
    });
    expect(fieldsOf(schema).find((f) => f.name === 'timeout_s')?.nullable).toBe(true);
  });
  it('starts required strings empty and validates types, enums and templates', () => {
    expect(defaultParams(schema)).toEqual({ url: '', template: '' });
    expect(validateParams(schema, { url: '', template: 'x', rounds: 1.5, on_timeout: 'no' })).toEqual({
      url: 'Required', rounds: 'Must be a whole number', on_timeout: 'One of: continue, fail',
    });
    expect(validateParams(schema, { url: '{{ inputs.u }}', template: 't', seconds: '{{ inputs.s }}' })).toEqual({});
  });
});

describe('waitingItems', () => {
  const ev = (seq: number, node: string, item: number, to: string): RunEvent => ({
    seq,
    at: '',
    kind: 'step',
    step_id: seq,
    node_id: node,
    item_index: item,
    attempt: 1,
    from_status: null,
    to_status: to,
    data: null,
  });
  it('lists every waiting map item, not only item 0', () => {
    const events = [ev(1, 'gate', 0, 'waiting'), ev(2, 'gate', 3, 'waiting'), ev(3, 'gate', 0, 'succeeded'), ev(4, 'other', 1, 'running')];
    expect(waitingItems(events, events.length - 1)).toEqual([{ node_id: 'gate', item_index: 3 }]);
    expect(waitingItems(events, 1)).toEqual([
      { node_id: 'gate', item_index: 0 },
      { node_id: 'gate', item_index: 3 },
    ]);
  });
});
