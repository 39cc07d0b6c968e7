/** What the quarantine tests hold: a virus finding from a remote client, for `raw`, with `over` on top. */
import type { HoldInput } from '../../src/quarantine/quarantine';

export function heldInput(raw: Buffer, over: Partial<HoldInput> = {}): HoldInput {
  return {
    session: 's1',
    queueId: '4ABC',
    bank: 'default',
    decidedBy: 'default',
    reason: 'VIRUS_FOUND',
    findings: ['VIRUS_FOUND'],
    envelope: { mailFrom: 'a@remote.test', smtputf8: false, recipients: [{ address: 'bob@example.test' }] },
    client: { addr: '198.51.100.7' },
    peer: '127.0.0.1',
    size: raw.length,
    raw: async function* () {
      yield raw;
    },
    ...over,
  };
}
