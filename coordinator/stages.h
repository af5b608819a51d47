// The coordinator's side of a stage: every pair of a plan staged at once through its source
// daemon's control API (client/control_api.h), watched to the end and journalled; and, before
// anything runs, the check that every daemon the plan names answers and serves its volumes.
// The coordinator is a client of the daemons: nothing here includes the daemon's server code.
// Threading: StageAll runs one thread per pair (at most kPlanPairsAtOnce) and journals on the
// caller's; CheckDaemons runs on the caller's thread.
#pragma once

#include <string>
#include <vector>

#include "agent/io/tls.h"
#include "base/result.h"
#include "base/status.h"
#include "client/json.h"
#include "coordinator/console.h"
#include "coordinator/journal.h"
#include "coordinator/plan.h"

namespace ferry {

// One stage of every pair at once, journalled under the next stage number. `checksum`: compare
// content (verify: full). Progress rows go to `console` for stages that move data.
std::vector<PairStage> StageAll(const Plan& plan, Journal& journal, const io::TlsContext* tls,
                                const std::string& kind, bool checksum, Console& console);

bool AllCommitted(const std::vector<PairStage>& stages);
// "PAIR: STATE: ERROR" of the first pair that did not commit ("" when all did).
std::string FirstError(const std::vector<PairStage>& stages);

// Before anything runs: every daemon the plan names answers, and serves the pair's volume
// (asked once per daemon through the control API). The error names the plan's line.
Status CheckDaemons(const Plan& plan, const io::TlsContext* tls);

// The volumes daemon `url` (ferry://HOST:PORT) serves, as its control API lists them
// ({"volumes": [{name, path, kind, size_bytes, used_bytes, ...}]}).
Result<nlohmann::json> DaemonVolumes(const std::string& url, const io::TlsContext* tls);

}  // namespace ferry
