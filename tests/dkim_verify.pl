#!/usr/bin/perl
# A second, independent DKIM verifier for the tests: Perl's Mail::DKIM (Debian's libmail-dkim-perl,
# with CryptX for Ed25519), its key lookups sent to the DNS server on 127.0.0.1:$ARGV[0].
# Reads a message on standard input; prints one line per signature: algorithm domain selector result.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my $resolver = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0], recurse => 1);
Mail::DKIM::DNS::resolver($resolver);
my $verifier = Mail::DKIM::Verifier->new();
local $/;
my $message = <STDIN>;
$message =~ s/\r?\n/\r\n/g;
$verifier->PRINT($message);
$verifier->CLOSE;
foreach my $signature ($verifier->signatures) {
    printf "%s %s %s %s\n", $signature->algorithm, $signature->domain, $signature->selector,
        $signature->result_detail;
}
