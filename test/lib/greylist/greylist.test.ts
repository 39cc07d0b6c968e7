/** The greylisting decision over a real sqlite store, with a clock the test moves. */
import { greylist, parseClientWhitelist, parseRecipientWhitelist, type GreylistSettings } from '../../../src/lib/greylist';
import type { Store } from '../../../src/store/store';
import { tempSqliteStore } from '../../helpers/policy';

const settings: GreylistSettings = {
  delaySec: 300,
  retryWindowSec: 2 * 86400,
  maxAgeDays: 35,
  ipv4PrefixBits: 24,
  ipv6PrefixBits: 64,
  autoWhitelistClients: 3,
  maxNewTripletsPerClientHour: 0,
};
const lists = { clients: parseClientWhitelist([{ name: 'c', text: 'trusted.example\n' }]), recipients: parseRecipientWhitelist([{ name: 'r', text: 'postmaster@\n' }]) };
const req = { clientAddress: '192.0.2.10', clientName: 'mail.sender.example', sender: 'alice@sender.example', recipient: 'bob@rcpt.example' };
const T0 = 1_800_000_000;

let store: Store;
beforeEach(() => {
  store = tempSqliteStore();
});
afterEach(() => store.close());

it('greylists a new triplet, again an early retry with the seconds missing, and passes the retry after the delay once with the delay', async () => {
  expect(await greylist(store, settings, lists, req, T0)).toEqual({ action: 'greylist', reason: 'new', retryInSec: 300 });
  expect(await greylist(store, settings, lists, req, T0 + 100)).toEqual({ action: 'greylist', reason: 'early retry', retryInSec: 200 });
  expect(await greylist(store, settings, lists, req, T0 + 301)).toEqual({ action: 'pass', reason: 'delayed', delayedSec: 301 });
  expect(await greylist(store, settings, lists, req, T0 + 400)).toEqual({ action: 'pass', reason: 'triplet found' });
});

it('counts a neighbouring address of the same /24 and a VERP variant of the sender as the same triplet', async () => {
  await greylist(store, settings, lists, req, T0);
  const other = { ...req, clientAddress: '192.0.2.99', sender: 'alice+123@sender.example' };
  expect(await greylist(store, settings, lists, other, T0 + 310)).toMatchObject({ action: 'pass', reason: 'delayed' });
});

it('starts over when the first retry comes after the retry window', async () => {
  await greylist(store, settings, lists, req, T0);
  expect(await greylist(store, settings, lists, req, T0 + settings.retryWindowSec + 10)).toMatchObject({ action: 'greylist', retryInSec: 300 });
});

it('passes listed clients and recipients without greylisting them', async () => {
  expect(await greylist(store, settings, lists, { ...req, clientName: 'mx1.trusted.example' }, T0)).toEqual({ action: 'pass', reason: 'client whitelist' });
  expect(await greylist(store, settings, lists, { ...req, recipient: 'postmaster@rcpt.example' }, T0)).toEqual({ action: 'pass', reason: 'recipient whitelist' });
});

it('whitelists a client after autoWhitelistClients passes, counted at most once an hour', async () => {
  let t = T0;
  for (let i = 0; i < 3; i++) {
    const r = { ...req, recipient: `user${i}@rcpt.example` };
    await greylist(store, settings, lists, r, t);
    expect(await greylist(store, settings, lists, r, t + 300)).toMatchObject({ reason: 'delayed' });
    t += 3600;
  }
  expect(await greylist(store, settings, lists, { ...req, recipient: 'new@rcpt.example' }, t)).toEqual({ action: 'pass', reason: 'client AWL' });
  // Another client of the same network is not whitelisted by it.
  expect(await greylist(store, settings, lists, { ...req, clientAddress: '192.0.2.11', recipient: 'new@rcpt.example' }, t)).toMatchObject({ action: 'greylist' });
});

it('replaces a stored triplet it cannot read, so the retry after the delay passes instead of being greylisted as new forever', async () => {
  // A value of another format (a damaged row, another program's writer) under the triplet's key.
  await store.set('greylist:t:192.0.2.0/alice@sender.example/bob@rcpt.example', 'garbage', { ttlMs: 86400_000 });
  expect(await greylist(store, settings, lists, req, T0)).toEqual({ action: 'greylist', reason: 'new', retryInSec: 300 });
  expect(await greylist(store, settings, lists, req, T0 + 301)).toEqual({ action: 'pass', reason: 'delayed', delayedSec: 301 });
});

it('greylists without storing the new triplets of a client past maxNewTripletsPerClientHour, and stores them again the next hour', async () => {
  const capped = { ...settings, maxNewTripletsPerClientHour: 3 };
  const hour = Math.floor(T0 / 3600) * 3600;
  for (let i = 0; i < 3; i++) expect(await greylist(store, capped, lists, { ...req, sender: `s${i}@spam.example` }, hour)).toMatchObject({ reason: 'new' });
  // The client's fourth is not stored: its retry is new again.
  const fourth = { ...req, sender: 's3@spam.example' };
  expect(await greylist(store, capped, lists, fourth, hour + 10)).toEqual({ action: 'greylist', reason: 'client cap', retryInSec: 300 });
  expect(await store.get('greylist:t:192.0.2.0/s3@spam.example/bob@rcpt.example')).toBeUndefined();
  // Known triplets are not counted: the first one still passes after the delay.
  expect(await greylist(store, capped, lists, { ...req, sender: 's0@spam.example' }, hour + 400)).toMatchObject({ action: 'pass', reason: 'delayed' });
  // Another client has its own count; the next hour, the client's new triplets are stored again.
  expect(await greylist(store, capped, lists, { ...fourth, clientAddress: '198.51.100.1' }, hour + 20)).toMatchObject({ reason: 'new' });
  expect(await greylist(store, capped, lists, fourth, hour + 3600)).toMatchObject({ reason: 'new' });
  expect(await greylist(store, capped, lists, fourth, hour + 3600 + 300)).toMatchObject({ action: 'pass', reason: 'delayed' });
});

it('does not let a neighbour in the same /24 use up the cap of a legitimate client there', async () => {
  const capped = { ...settings, maxNewTripletsPerClientHour: 3 };
  const hour = Math.floor(T0 / 3600) * 3600;
  // 192.0.2.66 makes up senders at the top of the hour, past the cap.
  for (let i = 0; i < 5; i++) await greylist(store, capped, lists, { ...req, clientAddress: '192.0.2.66', sender: `x${i}@made-up.example` }, hour);
  // The mail server at 192.0.2.10 still gets its new triplet stored, and its retry passes.
  expect(await greylist(store, capped, lists, req, hour + 60)).toEqual({ action: 'greylist', reason: 'new', retryInSec: 300 });
  expect(await greylist(store, capped, lists, req, hour + 400)).toMatchObject({ action: 'pass', reason: 'delayed' });
});

it('counts the cap of an IPv6 client per ipv6PrefixBits network, where a host has a whole /64 of addresses', async () => {
  const capped = { ...settings, maxNewTripletsPerClientHour: 2 };
  const hour = Math.floor(T0 / 3600) * 3600;
  for (let i = 1; i <= 2; i++) await greylist(store, capped, lists, { ...req, clientAddress: `2001:db8:1:2::${i}`, sender: `x${i}@made-up.example` }, hour);
  expect(await greylist(store, capped, lists, { ...req, clientAddress: '2001:db8:1:2::99' }, hour + 1)).toMatchObject({ reason: 'client cap' });
  expect(await greylist(store, capped, lists, { ...req, clientAddress: '2001:db8:1:3::1' }, hour + 1)).toMatchObject({ reason: 'new' });
});
