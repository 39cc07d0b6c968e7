/**
 * Where each DMARC evaluation is recorded, so that aggregate reports (RFC 7489 7.2) can be
 * built from the history later. The sqlite and Redis back-ends (DESIGN.md §6) implement this
 * interface; until one is configured, results go to the memory store, capped.
 */

export interface DmarcResultRecord {
  readonly receivedAt: Date;
  /** The client address from XFORWARD, when Postfix passed one. */
  readonly sourceIp?: string;
  readonly headerFrom: string;
  readonly policyDomain?: string;
  readonly policy?: 'none' | 'quarantine' | 'reject';
  readonly result: 'pass' | 'fail' | 'none' | 'temperror' | 'permerror';
  /** What this bank did: the disposition of RFC 7489 aggregate reports. */
  readonly disposition: 'none' | 'quarantine' | 'reject';
  readonly dkim: readonly { readonly domain: string; readonly selector: string; readonly result: string }[];
  readonly spf?: { readonly domain: string; readonly result: string };
}

export interface DmarcResultStore {
  record(r: DmarcResultRecord): Promise<void>;
}

/** Keeps the newest `max` records in memory (tests, and until a persistent store exists). */
export class MemoryDmarcResultStore implements DmarcResultStore {
  readonly records: DmarcResultRecord[] = [];

  constructor(private readonly max = 10000) {}

  async record(r: DmarcResultRecord): Promise<void> {
    this.records.push(r);
    if (this.records.length > this.max) this.records.shift();
  }
}
