/**
 * The whole-MTA benchmark's DKIM check, by a verifier independent of postseal and of
 * mailauth: Perl's Mail::DKIM (Debian package libmail-dkim-perl), its DNS pointed at the
 * benchmark's loopback server (bench/dns-server.ts) through Net::DNS. Every DKIM-Signature of
 * every message the sink received is verified (RFC 6376 §6); a set-up that signs must add
 * one for bench.example that passes, and none that fails; Postfix alone must add none.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { OWN_DOMAIN } from '../messages';

const exec = promisify(execFile);

/** Reads each file named on the command line (CRLF or LF), prints one line per signature. */
const SCRIPT = `use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;
my $port = shift @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port, udp_timeout => 2, retry => 2));
for my $file (@ARGV) {
  open(my $fh, '<:raw', $file) or die "$file: $!";
  my $v = Mail::DKIM::Verifier->new();
  while (my $line = <$fh>) { $line =~ s/\\r?\\n\\z/\\r\\n/; $v->PRINT($line); }
  $v->CLOSE();
  close($fh);
  my @sigs = $v->signatures;
  print join("\\t", $file, '-', '-', 'none', ''), "\\n" unless @sigs;
  for my $s (@sigs) {
    print join("\\t", $file, $s->domain // '', $s->selector // '', $s->result // '', $s->result_detail // ''), "\\n";
  }
}
`;

export interface SignatureResult {
  domain: string;
  selector: string;
  /** Mail::DKIM's result: pass, fail, invalid, temperror, none. */
  result: string;
  detail: string;
}

/** Mail::DKIM's verdict on every signature of each message (one file per message). */
export async function verifyWithMailDkim(dir: string, dnsPort: number, messages: readonly Buffer[]): Promise<SignatureResult[][]> {
  const script = path.join(dir, 'dkim-verify.pl');
  writeFileSync(script, SCRIPT);
  const files = messages.map((m, i) => {
    const file = path.join(dir, `delivered-${i}.eml`);
    writeFileSync(file, m);
    return file;
  });
  const { stdout } = await exec('perl', [script, String(dnsPort), ...files], { maxBuffer: 1 << 20 });
  const byFile = new Map<string, SignatureResult[]>(files.map((f) => [f, []]));
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [file, domain, selector, result, detail] = line.split('\t');
    if (result !== 'none') byFile.get(file)?.push({ domain, selector, result, detail });
  }
  return files.map((f) => byFile.get(f)!);
}

/** What is wrong with one delivered message for a set-up that does (or does not) sign, or null. */
export function signatureProblem(sigs: readonly SignatureResult[], signs: boolean): string | null {
  const own = sigs.filter((s) => s.domain.toLowerCase() === OWN_DOMAIN);
  if (!signs) return own.length ? `${own.length} ${OWN_DOMAIN} signature(s) where none should be` : null;
  if (!own.length) return `no ${OWN_DOMAIN} signature${sigs.length ? ` (only ${sigs.map((s) => s.domain).join(', ')})` : ''}`;
  const bad = own.filter((s) => s.result !== 'pass');
  return bad.length ? `Mail::DKIM: ${bad.map((s) => `${s.result} (${s.detail})`).join(', ')}` : null;
}
