// The built-in DNS switch of a plan (`switch_traffic: {dns: {server, zone, name, type, value,
// ttl, tsig_key_file}}`): the last step of a cutover points a name at the target.
//   1. the record NAME TYPE is read from the server (`dig`, not recursive, the answer must be
//      authoritative) and journalled as the old value, durably, before anything changes;
//   2. an RFC 2136 update signed with the plan's TSIG key (`nsupdate -k KEYFILE SCRIPT`, from
//      Debian's bind9-dnsutils: no DNS encoder of ours) deletes NAME TYPE and adds NAME TTL TYPE
//      VALUE, in one update message;
//   3. the record is read back from the server and must be exactly VALUE with TTL; the journal
//      gets the new value.
// Any failure (nsupdate's own message: "TSIG error with server: tsig indicates error", NOTAUTH,
// REFUSED; a read back that differs) is an error naming the server and the record, which the
// cutover turns into switch_failed. Idempotent: run again (a restarted coordinator) it finds the
// new value in place, keeps the old value journalled the first time, and updates nothing else.
// Everything runs within the hook's timeout.
// Threading: blocking, on the coordinator's thread.
#pragma once

#include <string>

#include "base/status.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

// Runs the switch `hook` (kind kDns) of the plan at `plan_path`; each step told to `console`
// ("hook switch_traffic: shop.example.com A at 127.0.0.1:53: 192.0.2.1 (ttl 60) -> 192.0.2.7
// (ttl 30)").
Status RunDnsHook(const std::string& plan_path, const std::string& name, const HookSpec& hook,
                  Journal& journal, Console& console);

// For the plan's checks: "shop.example.com." and "SHOP.example.com" are the same name.
std::string NormalizeDnsName(const std::string& name);
// A host name: dot-separated labels of 1 to 63 letters, digits, '-' or '_', 253 characters at most
// (an optional trailing dot).
bool IsDnsName(const std::string& name);
// Whether `name` is `zone` or below it (both normalized).
bool DnsNameInZone(const std::string& name, const std::string& zone);
// Whether `value` is a valid value of a record of `type` (A: an IPv4 address; CNAME: a host name,
// not an address).
bool IsDnsValue(const std::string& type, const std::string& value);

}  // namespace ferry
