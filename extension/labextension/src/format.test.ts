// Unit tests of the pure helpers: `npm test` (node's own test runner).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { countValue, formatDuration, parseValue, pinnedKeys, poolBaseImage, scheduleSpec, showValue } from './format';

test('durations read as a person says them', () => {
  assert.equal(formatDuration(0.25), '250 ms');
  assert.equal(formatDuration(12.34), '12.3 s');
  assert.equal(formatDuration(245), '4 min 05 s');
  assert.equal(formatDuration(7380), '2 h 03 min');
  assert.equal(formatDuration(null), '');
});

test('a schedule spec is what the API takes', () => {
  assert.equal(scheduleSpec('none', '0 6 * * *', 'UTC'), null);
  assert.equal(scheduleSpec('cron', '  ', 'UTC'), null);
  assert.deepEqual(scheduleSpec('cron', '0 6 * * *', 'Europe/Paris'), {
    kind: 'cron', cron: '0 6 * * *', timezone: 'Europe/Paris'
  });
  assert.deepEqual(scheduleSpec('interval', '3600', ''), { kind: 'interval', interval: 3600, timezone: 'UTC' });
  assert.deepEqual(scheduleSpec('interval', '1h30m', 'UTC'), { kind: 'interval', interval: '1h30m', timezone: 'UTC' });
});

test('parameter text becomes the JSON value of its type', () => {
  assert.equal(parseValue('42', 'string'), '42');
  assert.equal(parseValue('42', 'integer'), 42);
  assert.deepEqual(parseValue('[1, 2]', 'array'), [1, 2]);
  assert.equal(parseValue('true', undefined), true);
  assert.equal(parseValue('not json', 'integer'), 'not json');
  assert.equal(showValue({ a: 1 }), '{"a":1}');
  assert.equal(showValue('x'), 'x');
});

test('pinned job configuration keys are those without a placeholder', () => {
  assert.deepEqual(pinnedKeys({ image: '{{ image }}', privileged: false, env: '{{env}}' }), ['privileged']);
  assert.deepEqual(pinnedKeys(undefined), []);
});

test('the base image of a pool: pinned by its configuration, else the default of its variable', () => {
  assert.deepEqual(poolBaseImage({ base_job_template: { job_configuration: { base_image: 'py:3.12' } } }), ['py:3.12', true]);
  assert.deepEqual(poolBaseImage({
    base_job_template: {
      job_configuration: { base_image: '{{ base_image }}' },
      variables: { properties: { base_image: { default: 'py:3.11' } } }
    }
  }), ['py:3.11', false]);
  assert.deepEqual(poolBaseImage({ base_job_template: {} }), [null, false]);
});

test('a count field: empty is no limit, digits a number, the rest left for the server', () => {
  assert.equal(countValue(' '), null);
  assert.equal(countValue('3'), 3);
  assert.equal(countValue('-1'), -1);
  assert.equal(countValue('three'), 'three');
});
