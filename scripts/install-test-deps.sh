#!/usr/bin/env bash
# The Debian packages the test suite talks to (a real Postfix, a DNS server, independent DKIM
# verifiers, swaks, openssl, Mail::SRS and postsrsd for the SRS interop tests, the OpenSPF RFC
# 7208 suite that python3-spf ships, redis-server for the Redis store back-end, Prometheus and
# its promtool for the metrics tests, postgrey and postfix-policyd-spf-python beside the policy
# service, whose whitelist files and answers it matches, systemd for `systemd-analyze verify` of
# the unit in examples/systemd, xmllint from libxml2-utils for the DMARC aggregate-report schema,
# spamd, spamassassin and rspamd for the spam checks, started by the tests on loopback, clamd
# from clamav-daemon for the virus stage, started by the tests with signatures they write, and
# clamav's clamscan beside it, miltertest from the OpenDKIM project to drive the milter listener).
# Installs the missing ones (needs root and apt); one list for `npm test` and .ci/run.
set -euo pipefail
packages=(postfix systemd dnsmasq-base swaks openssl libmail-dkim-perl libnet-dns-perl libmail-srs-perl postsrsd python3-dkim python3-dnspython python3-spf redis-server prometheus postgrey postfix-policyd-spf-python libxml2-utils spamd spamassassin rspamd clamav-daemon clamav miltertest)
# The banned stage: Info-ZIP zip, bzip2 and xz make test archives; file(1) checks the magic-byte table.
packages+=(zip file bzip2 xz-utils)
# RAR, 7z, cab, xz, bzip2 and ISO archives are unpacked by The Unarchiver (unar: lsar and unar);
# 7-Zip (7zip), gcab and genisoimage make the test archives (RAR is written by the tests).
packages+=(unar 7zip gcab genisoimage)
# Debian's tnef reads the winmail.dat streams the tests write, beside postseal's reader.
packages+=(tnef)
# Perl's Convert::BinHex writes the BinHex test files (amavisd-new uses it too).
packages+=(libconvert-binhex-perl)
# sharutils' uuencode writes the uuencoded test files (both encodings).
packages+=(sharutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "postseal tests need these Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix's package asks how to configure the system MTA; the tests run private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# The tests start their own private daemons (clamd, spamd, rspamd, redis, ...); the packages'
# system services must not start (clamd would fail without signatures and fail the install):
# a policy-rc.d that refuses every start, for the length of the install only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
