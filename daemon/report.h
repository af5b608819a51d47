// `ferry report PLAN --html FILE`: one self-contained HTML page (no script, no external file)
// from the plan's journal: the migration's state, a chart of each stage's changed bytes, its
// duration and the downtime predicted after it (with max_downtime, and the cutover's actual
// downtime beside its prediction), the stage table per pair, and the journal's transitions.
// Threading: the caller's.
#pragma once

#include <string>

#include "daemon/plan.h"

namespace ferry {

// 0 when the page was written; errors (journal, file) are printed and give kExitUsage.
int RunPlanReport(const Plan& plan, const std::string& state_dir, const std::string& html_path);

}  // namespace ferry
