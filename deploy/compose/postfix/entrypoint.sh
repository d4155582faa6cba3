#!/bin/sh
# Build main.cf/master.cf from Debian's defaults plus the sealgate snippets, then
# run Postfix in the foreground. MILTER overrides the snippet's unix socket
# (containers talk TCP); the release port listens on all container addresses
# so that sealgate (another container) can re-inject.
set -eu
cp /usr/share/postfix/main.cf.dist /etc/postfix/main.cf 2>/dev/null || : > /etc/postfix/main.cf
cat /usr/share/sealgate/postfix-main.cf >> /etc/postfix/main.cf
postconf -e "maillog_file = /dev/stdout" "mynetworks = 127.0.0.0/8 172.16.0.0/12" \
  "myhostname = mx.example.com" "relayhost = ${RELAYHOST:-}" "smtpd_milters = ${MILTER}"
sed -e "s/^127\.0\.0\.1:10026 /10026 /" -e "s#-o mynetworks=127.0.0.0/8#-o mynetworks=127.0.0.0/8,172.16.0.0/12#" \
  /usr/share/sealgate/postfix-master.cf >> /etc/postfix/master.cf
exec postfix start-fg
